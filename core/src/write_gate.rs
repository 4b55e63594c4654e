//! The one writer of an SQLite database, queued for in the process.

use sqlx::AnyPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

/// SQLite lets one transaction write at a time; a second writer waits in SQLite's busy handler,
/// which sleeps (1, 2, 5 ... 100 ms) and tries again rather than queueing, so that under a
/// flash sale the order path's writers spent most of their time asleep. The writers that take
/// the gate (the order path's batches, the sandbox processor's charges, the replay timeline's
/// writer) queue here instead, in order, each woken as the previous one commits. On PostgreSQL there is no gate: its row locks queue.
#[derive(Clone, Default)]
pub struct WriteGate(Option<Arc<tokio::sync::Mutex<()>>>);

impl WriteGate {
    /// The gate of `pool`'s database: one per SQLite database in this process, shared by every
    /// pool on it; none for PostgreSQL.
    pub fn of(pool: &AnyPool) -> Self {
        static GATES: OnceLock<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>> =
            OnceLock::new();
        let url = &pool.connect_options().database_url;
        if url.scheme() != "sqlite" {
            return Self(None);
        }
        let mut gates = GATES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        gates.retain(|_, gate| gate.strong_count() > 0);
        let key = url.as_str().to_owned();
        if let Some(gate) = gates.get(&key).and_then(Weak::upgrade) {
            return Self(Some(gate));
        }
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        gates.insert(key, Arc::downgrade(&gate));
        Self(Some(gate))
    }

    /// Waits for the turn to write; the turn lasts as long as the guard.
    pub async fn enter(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.0 {
            Some(gate) => Some(Arc::clone(gate).lock_owned().await),
            None => None,
        }
    }
}
