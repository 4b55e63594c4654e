//! The exchange rates in force: a [`RateTable`] loaded from the operator's file or HTTP endpoint
//! and refreshed on a timer. A failed refresh keeps the last good table (and says so in the
//! log): prices keep converting at slightly older rates rather than not at all. Before the first
//! table arrives there are no rates, and conversions say so.

use crate::fx::{FxError, RateTable};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// Largest rates document read (a table of every ISO 4217 currency is a few kilobytes).
const MAX_BYTES: usize = 256 * 1024;

/// Where the rates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RatesSource {
    File(PathBuf),
    Http(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RatesError {
    #[error("reading {0}: {1}")]
    Read(String, String),
    #[error("{0} is larger than {MAX_BYTES} bytes")]
    TooLarge(String),
    #[error(transparent)]
    Table(#[from] FxError),
}

impl RatesSource {
    /// Fetches and checks one table.
    pub async fn load(&self, http: &reqwest::Client) -> Result<RateTable, RatesError> {
        let text = match self {
            RatesSource::File(path) => {
                let name = path.display().to_string();
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| RatesError::Read(name.clone(), e.to_string()))?;
                if bytes.len() > MAX_BYTES {
                    return Err(RatesError::TooLarge(name));
                }
                String::from_utf8(bytes).map_err(|_| RatesError::Read(name, "not UTF-8".into()))?
            }
            RatesSource::Http(url) => {
                let read = |e: reqwest::Error| RatesError::Read(url.clone(), e.to_string());
                let response = http
                    .get(url)
                    .send()
                    .await
                    .map_err(read)?
                    .error_for_status()
                    .map_err(read)?;
                if response
                    .content_length()
                    .is_some_and(|n| n > MAX_BYTES as u64)
                {
                    return Err(RatesError::TooLarge(url.clone()));
                }
                let bytes = response.bytes().await.map_err(read)?;
                if bytes.len() > MAX_BYTES {
                    return Err(RatesError::TooLarge(url.clone()));
                }
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| RatesError::Read(url.clone(), "not UTF-8".into()))?
            }
        };
        Ok(RateTable::from_json(&text)?)
    }
}

/// The table in force; cheap to clone and to read.
#[derive(Clone, Default)]
pub struct Rates(Arc<RwLock<Option<Arc<RateTable>>>>);

impl Rates {
    pub fn current(&self) -> Option<Arc<RateTable>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, table: RateTable) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(table));
    }

    /// Loads from `source` now, then every `every`, until `stop`.
    pub async fn follow(
        self,
        source: RatesSource,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => match source.load(&http).await {
                    Ok(table) => {
                        tracing::info!(source = %table.source, as_of = %table.as_of, "exchange rates loaded");
                        self.set(table);
                    }
                    Err(e) => tracing::warn!(error = %e, "exchange rates not refreshed; keeping the last table"),
                },
            }
        }
    }
}
