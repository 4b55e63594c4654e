//! The replay job queue on a real Redis (the test script starts one on loopback): every job
//! goes to exactly one worker, an acknowledged job never comes back, and a job whose worker
//! died is claimed by another once it has been idle long enough.

use std::time::Duration;
use vitrine_core::StreamId;
use vitrine_subtitles::jobs::{JobQueue, MemoryQueue, RedisQueue};

fn redis_url() -> String {
    std::env::var("VITRINE_TEST_REDIS_URL").expect(
        "VITRINE_TEST_REDIS_URL is not set: run the tests with scripts/test.sh, or \
         eval \"$(scripts/services.sh start)\" first",
    )
}

async fn queue(key: &str) -> RedisQueue {
    RedisQueue::connect_to(
        &redis_url(),
        key,
        Duration::from_millis(300),
        Duration::from_millis(200),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn redis_jobs_go_to_one_worker_and_survive_a_dead_one() {
    let key = format!("vitrine:test:jobs:{}", rand_suffix());
    let (a, b) = (StreamId::generate(), StreamId::generate());
    let one = queue(&key).await;
    let two = queue(&key).await;
    one.push(&a).await.unwrap();
    one.push(&b).await.unwrap();

    let first = one.next("worker-1").await.unwrap().expect("a job");
    let second = two.next("worker-2").await.unwrap().expect("a job");
    assert_eq!((first.stream.clone(), first.attempt), (a.clone(), 1));
    assert_eq!(second.stream, b);
    two.ack(&second).await.unwrap();

    // worker-1 dies holding `a`: once idle past the claim time, worker-2 gets it again.
    let mut again = None;
    for _ in 0..50 {
        if let Some(d) = two.next("worker-2").await.unwrap() {
            again = Some(d);
            break;
        }
    }
    let again = again.expect("the dead worker's job is claimed");
    assert_eq!(again.stream, a);
    assert_eq!(again.attempt, 2, "{again:?}");
    two.ack(&again).await.unwrap();
    // Nothing is left: both jobs were acknowledged.
    assert_eq!(two.next("worker-2").await.unwrap(), None);
    assert_eq!(one.next("worker-1").await.unwrap(), None);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let err = RedisQueue::connect("redis://127.0.0.1:1")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().starts_with("job queue: "), "{err}");
}

#[tokio::test]
async fn the_memory_queue_is_bounded() {
    let q = MemoryQueue::default();
    let s = StreamId::generate();
    for _ in 0..vitrine_subtitles::jobs::MEMORY_QUEUE {
        q.push(&s).await.unwrap();
    }
    assert_eq!(
        q.push(&s).await.unwrap_err().to_string(),
        "the job queue is full"
    );
    assert_eq!(q.next("w").await.unwrap().unwrap().stream, s);
}

fn rand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
