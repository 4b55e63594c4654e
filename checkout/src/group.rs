//! Group commit: requests for one key (a product, a seller) queue while a batch of that key is
//! being written, and the writer takes everything queued since (up to a bound) as its next
//! batch, in one transaction. Nothing waits for a timer: a lone request is written at once as a
//! batch of one, and batches grow only as fast as the database keeps the writer busy, which is
//! when they pay (one commit, one lock of the hot row, a few multi-row statements for many
//! buyers).
//!
//! On SQLite the batch is taken when the writer's turn at the database's one writer comes
//! ([`Writer::gate`]), not before it waits for that turn: the requests that arrive while other
//! writers hold the database join the batch, so the batches grow with the wait.
//!
//! The writer runs in a task of its own, so a request that gives up (its client went away)
//! never strands the others queued behind it; a writer that panics drops the answers it owed,
//! which its requests see as [`Lost`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;
use vitrine_core::write_gate::WriteGate;

/// A turn at SQLite's one writer, held while a batch is written (`None`: no gate, PostgreSQL).
pub(crate) type Turn = Option<tokio::sync::OwnedMutexGuard<()>>;

/// `turn`, or a new one at `gate` (a writer called outside the group's turn: one job at a time
/// after a failed batch).
pub(crate) async fn turn_at(turn: Turn, gate: &WriteGate) -> Turn {
    match turn {
        Some(turn) => Some(turn),
        None => gate.enter().await,
    }
}

/// Writes one batch: one answer per job, in the jobs' order.
pub(crate) trait Writer<J, R>: Send + Sync + 'static {
    /// Writes `jobs`, in `turn` (taken before the batch was, see [`Writer::gate`]); a writer
    /// that needs the gate again after its first transaction (writing the jobs one at a time
    /// after a failed batch) enters it again, since its turn ended with that transaction.
    fn write(&self, jobs: Vec<J>, turn: Turn) -> impl Future<Output = Vec<R>> + Send;

    /// The gate whose turn the batch is taken in (none by default).
    fn gate(&self) -> WriteGate {
        WriteGate::default()
    }

    /// How many batches of one key may be written at once (one by default). Two let a batch's
    /// first statements run while the one before it finishes under a lock both need.
    fn writers(&self) -> usize {
        1
    }
}

/// The writer of a batch went away without answering (it panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost;

type Queue<J, R> = Vec<(J, oneshot::Sender<R>)>;

/// A key's queue and how many writer tasks run for it.
struct Slot<J, R> {
    queue: Queue<J, R>,
    writers: usize,
}

type Slots<K, J, R> = Arc<Mutex<HashMap<K, Slot<J, R>>>>;

/// Queues per key; a key is present exactly while a writer task runs for it.
pub(crate) struct Batcher<K, J, R> {
    queues: Slots<K, J, R>,
    max: usize,
}

impl<K, J, R> Clone for Batcher<K, J, R> {
    fn clone(&self) -> Self {
        Self {
            queues: Arc::clone(&self.queues),
            max: self.max,
        }
    }
}

impl<K, J, R> Batcher<K, J, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    J: Send + 'static,
    R: Send + 'static,
{
    /// Batches of at most `max` jobs.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            queues: Arc::default(),
            max: max.max(1),
        }
    }

    /// Queues `job` under `key` and waits for its answer; starts a writer (with `writer`) when
    /// fewer than [`Writer::writers`] run for the key.
    pub(crate) async fn submit<W: Writer<J, R>>(
        &self,
        key: K,
        job: J,
        writer: W,
    ) -> Result<R, Lost> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = queues.entry(key.clone()).or_insert_with(|| Slot {
                queue: Vec::new(),
                writers: 0,
            });
            slot.queue.push((job, tx));
            let room = slot.writers < writer.writers().max(1);
            if room {
                slot.writers += 1;
            }
            room
        };
        if lead {
            let drain = Drain {
                queues: Arc::clone(&self.queues),
                key: Some(key),
                max: self.max,
            };
            tokio::spawn(drain.run(writer));
        }
        rx.await.map_err(|_| Lost)
    }

    /// Jobs queued under `key` now, the batch being written excluded (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn queued(&self, key: &K) -> usize {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.get(key).map_or(0, |slot| slot.queue.len())
    }
}

/// A writer task of one key. Should the last one die, its key is removed with whatever was
/// queued, so those requests learn it ([`Lost`]) and the next request starts a new writer.
struct Drain<K: Hash + Eq, J, R> {
    queues: Slots<K, J, R>,
    key: Option<K>,
    max: usize,
}

impl<K: Hash + Eq, J, R> Drain<K, J, R> {
    /// Leaves (as [`Self::next_batch`] does) when nothing is queued, before waiting for a turn
    /// at the gate only to find the queue empty.
    fn leave_if_idle(&mut self) -> bool {
        let Some(key) = self.key.as_ref() else {
            return true;
        };
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if queues.get(key).is_some_and(|slot| !slot.queue.is_empty()) {
            return false;
        }
        leave(&mut queues, key);
        self.key = None;
        true
    }

    /// The next batch, or `None` when nothing is queued (this writer leaves; the key is removed
    /// with the last one).
    fn next_batch(&mut self) -> Option<Queue<J, R>> {
        let key = self.key.as_ref()?;
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = queues.get_mut(key)?;
        if slot.queue.is_empty() {
            leave(&mut queues, key);
            self.key = None;
            return None;
        }
        let n = slot.queue.len().min(self.max);
        Some(slot.queue.drain(..n).collect())
    }

    async fn run<W: Writer<J, R>>(mut self, writer: W) {
        let gate = writer.gate();
        loop {
            if self.leave_if_idle() {
                break;
            }
            let turn = gate.enter().await;
            let Some(batch) = self.next_batch() else {
                break;
            };
            let (jobs, answers): (Vec<J>, Vec<_>) = batch.into_iter().unzip();
            let results = writer.write(jobs, turn).await;
            debug_assert_eq!(results.len(), answers.len(), "one answer per job");
            for (answer, result) in answers.into_iter().zip(results) {
                // The request may have gone away: its answer is dropped, its effect stands.
                let _ = answer.send(result);
            }
        }
    }
}

impl<K: Hash + Eq, J, R> Drop for Drain<K, J, R> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            leave(&mut queues, &key);
        }
    }
}

/// One writer of `key` leaves; with the last, the key goes with whatever is still queued.
fn leave<K: Hash + Eq, J, R>(queues: &mut HashMap<K, Slot<J, R>>, key: &K) {
    if let Some(slot) = queues.get_mut(key) {
        slot.writers = slot.writers.saturating_sub(1);
        if slot.writers == 0 {
            queues.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Semaphore;

    /// Records batch sizes; each batch waits for a permit, so a test decides when it ends.
    #[derive(Clone)]
    struct Gate {
        permits: Arc<Semaphore>,
        sizes: Arc<Mutex<Vec<usize>>>,
        started: Arc<tokio::sync::Notify>,
    }

    impl Gate {
        fn new() -> Self {
            Self {
                permits: Arc::new(Semaphore::new(0)),
                sizes: Arc::default(),
                started: Arc::default(),
            }
        }
    }

    impl Writer<u32, u32> for Gate {
        async fn write(&self, jobs: Vec<u32>, _turn: Turn) -> Vec<u32> {
            self.sizes.lock().unwrap().push(jobs.len());
            self.started.notify_one();
            self.permits.acquire().await.unwrap().forget();
            jobs.into_iter().map(|j| j * 10).collect()
        }
    }

    struct Panics;

    impl Writer<u32, u32> for Panics {
        async fn write(&self, _jobs: Vec<u32>, _turn: Turn) -> Vec<u32> {
            panic!("the writer fails");
        }
    }

    /// Two batches of one key in flight at once when the writer allows two writers: the second
    /// request is written while the first batch still is, the rest queue behind both.
    #[tokio::test]
    async fn a_key_with_two_writers_writes_two_batches_at_once() {
        struct Two(Gate);
        impl Writer<u32, u32> for Two {
            async fn write(&self, jobs: Vec<u32>, turn: Turn) -> Vec<u32> {
                self.0.write(jobs, turn).await
            }
            fn writers(&self) -> usize {
                2
            }
        }
        let batcher: Batcher<&str, u32, u32> = Batcher::new(64);
        let gate = Gate::new();
        let mut answers = Vec::new();
        for job in 1..=2 {
            let (b, g) = (batcher.clone(), gate.clone());
            answers.push(tokio::spawn(
                async move { b.submit("p", job, Two(g)).await },
            ));
            // Bounded: with one writer per key the second batch would never start.
            tokio::time::timeout(std::time::Duration::from_secs(10), gate.started.notified())
                .await
                .expect("a writer for the request");
        }
        assert_eq!(*gate.sizes.lock().unwrap(), vec![1, 1], "both in flight");
        for job in 3..=5 {
            let (b, g) = (batcher.clone(), gate.clone());
            answers.push(tokio::spawn(
                async move { b.submit("p", job, Two(g)).await },
            ));
            until_queued(&batcher, (job - 2) as usize).await;
        }
        gate.permits.add_permits(10);
        for (n, answer) in answers.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap(), Ok((n as u32 + 1) * 10));
        }
        let mut sizes = gate.sizes.lock().unwrap().clone();
        sizes.sort();
        assert_eq!(
            sizes,
            vec![1, 1, 3],
            "the three queued ones went in one batch"
        );
        assert_eq!(batcher.queued(&"p"), 0);
    }

    /// Waits (bounded) until `n` requests queue under the key "p".
    async fn until_queued(batcher: &Batcher<&'static str, u32, u32>, n: usize) {
        let queued = async {
            while batcher.queued(&"p") < n {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), queued)
            .await
            .expect("the requests never queued: a writer took them");
    }

    /// Records batch sizes, taking its batches in turns at `gate`.
    struct Gated {
        gate: WriteGate,
        sizes: Arc<Mutex<Vec<usize>>>,
    }

    impl Writer<u32, u32> for Gated {
        async fn write(&self, jobs: Vec<u32>, turn: Turn) -> Vec<u32> {
            assert!(
                turn.is_some(),
                "the batch is written in the turn it was taken in"
            );
            self.sizes.lock().unwrap().push(jobs.len());
            jobs.into_iter().map(|j| j * 10).collect()
        }

        fn gate(&self) -> WriteGate {
            self.gate.clone()
        }
    }

    /// On SQLite the batch is taken when the turn at the one writer comes: requests that arrive
    /// while another writer holds it join the first request's batch instead of waiting for the
    /// next one.
    #[tokio::test]
    async fn a_batch_taken_at_its_turn_holds_what_arrived_while_it_waited() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .connect_lazy("sqlite:///nonexistent/gate-test.db?mode=ro")
            .unwrap();
        let gate = WriteGate::of(&pool);
        let other_writer = gate.enter().await;
        let batcher: Batcher<&str, u32, u32> = Batcher::new(64);
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for job in 1..=5 {
            let b = batcher.clone();
            let writer = Gated {
                gate: gate.clone(),
                sizes: Arc::clone(&sizes),
            };
            waiting.push(tokio::spawn(
                async move { b.submit("p", job, writer).await },
            ));
            until_queued(&batcher, job as usize).await;
        }
        drop(other_writer);
        for (n, answer) in waiting.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap(), Ok((n as u32 + 1) * 10));
        }
        assert_eq!(*sizes.lock().unwrap(), vec![5], "one batch of all five");
    }

    #[tokio::test]
    async fn requests_queued_behind_a_batch_are_written_together_in_order() {
        let batcher: Batcher<&str, u32, u32> = Batcher::new(3);
        let gate = Gate::new();
        let first = tokio::spawn({
            let (b, g) = (batcher.clone(), gate.clone());
            async move { b.submit("p", 1, g).await }
        });
        gate.started.notified().await;
        // Five more arrive while the first batch is being written.
        let mut rest = Vec::new();
        for job in 2..=6 {
            let (b, g) = (batcher.clone(), gate.clone());
            rest.push(tokio::spawn(async move { b.submit("p", job, g).await }));
            until_queued(&batcher, (job - 1) as usize).await;
        }
        gate.permits.add_permits(3);
        assert_eq!(first.await.unwrap(), Ok(10));
        let answers: Vec<_> = futures_join(rest).await;
        assert_eq!(answers, vec![Ok(20), Ok(30), Ok(40), Ok(50), Ok(60)]);
        // One alone, then the queue in batches of at most three.
        assert_eq!(*gate.sizes.lock().unwrap(), vec![1, 3, 2]);
        assert_eq!(batcher.queued(&"p"), 0);
    }

    #[tokio::test]
    async fn keys_are_written_independently() {
        let batcher: Batcher<&str, u32, u32> = Batcher::new(8);
        let gate = Gate::new();
        gate.permits.add_permits(2);
        let a = batcher.submit("a", 1, gate.clone());
        let b = batcher.submit("b", 2, gate.clone());
        let (a, b) = tokio::join!(a, b);
        assert_eq!((a, b), (Ok(10), Ok(20)));
        assert_eq!(*gate.sizes.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test]
    async fn a_writer_that_dies_loses_its_batch_and_the_next_request_starts_anew() {
        let batcher: Batcher<&str, u32, u32> = Batcher::new(8);
        assert_eq!(batcher.submit("p", 1, Panics).await, Err(Lost));
        let gate = Gate::new();
        gate.permits.add_permits(1);
        assert_eq!(batcher.submit("p", 2, gate.clone()).await, Ok(20));
    }

    #[tokio::test]
    async fn a_request_that_gives_up_leaves_the_others_answered() {
        let batcher: Batcher<&str, u32, u32> = Batcher::new(8);
        let gate = Gate::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let given_up = {
            let (b, g, c) = (batcher.clone(), gate.clone(), Arc::clone(&calls));
            tokio::spawn(async move {
                c.fetch_add(1, Ordering::SeqCst);
                b.submit("p", 1, g).await
            })
        };
        gate.started.notified().await;
        given_up.abort();
        let next = tokio::spawn({
            let (b, g) = (batcher.clone(), gate.clone());
            async move { b.submit("p", 2, g).await }
        });
        until_queued(&batcher, 1).await;
        gate.permits.add_permits(2);
        assert_eq!(next.await.unwrap(), Ok(20));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(*gate.sizes.lock().unwrap(), vec![1, 1]);
    }

    async fn futures_join(
        handles: Vec<tokio::task::JoinHandle<Result<u32, Lost>>>,
    ) -> Vec<Result<u32, Lost>> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
