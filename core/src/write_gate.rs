//! The one writer of an SQLite database, queued for in the process.

use sqlx::AnyPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

/// SQLite lets one transaction write at a time; a second writer waits in SQLite's busy handler,
/// which sleeps (1, 2, 5 ... 100 ms) and tries again rather than queueing, so that under a
/// flash sale the order path's writers spent most of their time asleep. The writers that take
/// the gate (the order path's batches, the sandbox processor's charges, the replay timeline's
/// writer, the webhook
/// expansion) queue here instead, in order, each woken as the previous one commits. On
/// PostgreSQL there is no gate: its row locks queue.
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

    /// Whether writers take turns here (an SQLite database), rather than on the database's row
    /// locks (PostgreSQL).
    pub fn serialises(&self) -> bool {
        self.0.is_some()
    }

    /// Waits for the turn to write; the turn lasts as long as the guard.
    pub async fn enter(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.0 {
            Some(gate) => Some(Arc::clone(gate).lock_owned().await),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::any::{AnyPoolOptions, install_default_drivers};

    /// Polls `f` once: its output if it is ready at once.
    fn ready<F: Future>(f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }

    fn sqlite(path: &std::path::Path) -> AnyPool {
        AnyPoolOptions::new()
            .connect_lazy(&format!("sqlite://{}?mode=rwc", path.display()))
            .unwrap()
    }

    #[tokio::test]
    async fn one_gate_per_sqlite_database_held_in_turn_and_none_for_postgres() {
        install_default_drivers();
        let dir = std::env::temp_dir().join(format!("gate-{}", crate::ids::random_id("t")));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, a_again, b) = (
            WriteGate::of(&sqlite(&dir.join("a.db"))),
            WriteGate::of(&sqlite(&dir.join("a.db"))),
            WriteGate::of(&sqlite(&dir.join("b.db"))),
        );
        // Two pools on one file share the gate: while one writes, the other waits.
        let turn = a.enter().await.expect("SQLite has a gate");
        assert!(
            ready(a_again.enter()).is_none(),
            "a second writer of a.db went ahead"
        );
        // Another file's gate is free meanwhile.
        assert!(matches!(ready(b.enter()), Some(Some(_))));
        drop(turn);
        assert!(matches!(ready(a_again.enter()), Some(Some(_))));
        // PostgreSQL queues on its row locks: no gate.
        let pg = AnyPoolOptions::new()
            .connect_lazy("postgres://user@127.0.0.1:1/none")
            .unwrap();
        assert!(WriteGate::of(&pg).enter().await.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
