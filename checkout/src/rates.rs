//! The exchange rates in force: a [`RateTable`] loaded from the operator's file or HTTP endpoint
//! and refreshed on a timer. A failed refresh keeps the last good table (and says so in the
//! log): prices keep converting at slightly older rates rather than not at all, but only up to
//! an age limit; past it, conversions are refused (a source that stopped answering days ago
//! must not price orders silently). Before the first table arrives there are no rates, and
//! conversions say so. A server with no source configured has no rates by choice.

use crate::fx::{FxError, RateTable};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

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

/// Why no rates may be used now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatesUnavailable {
    #[error("no exchange rates are configured on this server")]
    NotConfigured,
    #[error("the exchange rates have not loaded yet")]
    NotLoaded,
    #[error(
        "the exchange rates were loaded {age_secs} s ago, past the {max_age_secs} s limit; their source has stopped answering"
    )]
    Stale { age_secs: i64, max_age_secs: u64 },
}

struct State {
    /// The table and when it was loaded (Unix milliseconds).
    table: RwLock<Option<(Arc<RateTable>, i64)>>,
    max_age: Duration,
    /// A source follows these rates (or a table was set): no table then means "not yet".
    configured: AtomicBool,
}

/// The table in force; cheap to clone and to read.
#[derive(Clone)]
pub struct Rates(Arc<State>);

impl Default for Rates {
    fn default() -> Self {
        Self::new(Duration::from_secs(24 * 3600))
    }
}

impl Rates {
    /// Rates that are refused once older than `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Self(Arc::new(State {
            table: RwLock::new(None),
            max_age,
            configured: AtomicBool::new(false),
        }))
    }

    /// The table loaded last, whatever its age.
    pub fn current(&self) -> Option<Arc<RateTable>> {
        let table = self.0.table.read().unwrap_or_else(|e| e.into_inner());
        table.as_ref().map(|(t, _)| Arc::clone(t))
    }

    /// The table, if it may be used now.
    pub fn fresh(&self) -> Result<Arc<RateTable>, RatesUnavailable> {
        self.fresh_at(crate::db::now_ms())
    }

    /// The table, if it may be used at `now` (Unix milliseconds).
    pub fn fresh_at(&self, now: i64) -> Result<Arc<RateTable>, RatesUnavailable> {
        let table = self.0.table.read().unwrap_or_else(|e| e.into_inner());
        let Some((t, loaded)) = table.as_ref() else {
            return Err(if self.is_configured() {
                RatesUnavailable::NotLoaded
            } else {
                RatesUnavailable::NotConfigured
            });
        };
        let age_ms = now.saturating_sub(*loaded);
        if age_ms > self.0.max_age.as_millis() as i64 {
            return Err(RatesUnavailable::Stale {
                age_secs: age_ms / 1000,
                max_age_secs: self.0.max_age.as_secs(),
            });
        }
        Ok(Arc::clone(t))
    }

    /// Whether this server has rates at all (a source, or a table set by hand).
    pub fn is_configured(&self) -> bool {
        self.0.configured.load(Ordering::Relaxed)
    }

    pub fn set(&self, table: RateTable) {
        self.set_at(table, crate::db::now_ms());
    }

    /// Puts `table` in force as loaded at `loaded_at` (Unix milliseconds).
    pub fn set_at(&self, table: RateTable, loaded_at: i64) {
        self.0.configured.store(true, Ordering::Relaxed);
        *self.0.table.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Arc::new(table), loaded_at));
    }

    /// Loads from `source` now, then every `every`, until `stop`. The rates count as
    /// configured from this call on, before the returned future first runs.
    pub fn follow(
        self,
        source: RatesSource,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.0.configured.store(true, Ordering::Relaxed);
        self.run(source, every, stop)
    }

    async fn run(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RateTable {
        RateTable::from_json(r#"{"base":"USD","source":"s","as_of":"t","rates":{"EUR":"0.9"}}"#)
            .unwrap()
    }

    #[test]
    fn a_table_past_its_age_limit_is_refused() {
        let rates = Rates::new(Duration::from_secs(60));
        assert_eq!(
            rates.fresh_at(0).unwrap_err(),
            RatesUnavailable::NotConfigured
        );
        rates.set_at(table(), 1_000_000);
        assert!(rates.fresh_at(1_000_000 + 60_000).is_ok(), "at the limit");
        assert_eq!(
            rates.fresh_at(1_000_000 + 61_000).unwrap_err(),
            RatesUnavailable::Stale {
                age_secs: 61,
                max_age_secs: 60
            }
        );
        assert!(rates.current().is_some(), "kept, for the operator to see");
    }

    #[tokio::test]
    async fn following_a_source_counts_as_configured_at_once() {
        let rates = Rates::default();
        let stop = tokio_util::sync::CancellationToken::new();
        stop.cancel();
        let running = rates.clone().follow(
            RatesSource::File("/nonexistent/rates.json".into()),
            Duration::from_secs(3600),
            stop,
        );
        assert_eq!(rates.fresh().unwrap_err(), RatesUnavailable::NotLoaded);
        running.await;
    }
}
