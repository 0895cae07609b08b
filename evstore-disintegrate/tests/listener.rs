//! Event listeners run from the log by the listener runner.

mod common;

use common::*;
use disintegrate::{EventListener, EventStore, PersistedEvent, StreamQuery};
use evstore_disintegrate::{ListenerHandle, ListenerRunner, OnError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records the id of every course event it handles; fails once on the
/// event with id `fail_once_on`.
struct Recorder {
    query: StreamQuery<u64, CourseEvent>,
    seen: Arc<Mutex<Vec<u64>>>,
    fail_once_on: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[error("the read model is unavailable")]
struct Unavailable;

#[async_trait::async_trait]
impl EventListener<u64, CourseEvent> for Recorder {
    type Error = Unavailable;

    fn id(&self) -> &'static str {
        "enrolments"
    }

    fn query(&self) -> &StreamQuery<u64, CourseEvent> {
        &self.query
    }

    async fn handle(&self, event: PersistedEvent<u64, CourseEvent>) -> Result<(), Unavailable> {
        if self
            .fail_once_on
            .compare_exchange(event.id(), 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Err(Unavailable);
        }
        self.seen.lock().unwrap().push(event.id());
        Ok(())
    }
}

struct Harness {
    events: Events,
    seen: Arc<Mutex<Vec<u64>>>,
    fail_once_on: Arc<AtomicU64>,
}

impl Harness {
    fn new(events: Events) -> Self {
        Harness {
            events,
            seen: Arc::default(),
            fail_once_on: Arc::default(),
        }
    }

    fn runner(
        &self,
    ) -> ListenerRunner<
        DomainEvent,
        disintegrate::serde::json::Json<DomainEvent>,
        Recorder,
        CourseEvent,
    > {
        let recorder = Recorder {
            query: disintegrate::query!(CourseEvent; course_id == "rust"),
            seen: Arc::clone(&self.seen),
            fail_once_on: Arc::clone(&self.fail_once_on),
        };
        ListenerRunner::new(&self.events, recorder)
    }

    /// Waits until `count` events were handled (a minute at most).
    async fn wait_for(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.seen.lock().unwrap().len() < count {
            assert!(
                Instant::now() < deadline,
                "only {:?} handled",
                self.seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn seen(&self) -> Vec<u64> {
        self.seen.lock().unwrap().clone()
    }
}

async fn write(events: &Events, batch: Vec<DomainEvent>) {
    events.append_without_validation(batch).await.unwrap();
}

fn rust_and_go(n: usize) -> Vec<DomainEvent> {
    (0..n)
        .flat_map(|i| {
            [
                DomainEvent::StudentEnrolled {
                    student_id: format!("s{i}"),
                    course_id: "rust".into(),
                },
                DomainEvent::StudentEnrolled {
                    student_id: format!("s{i}"),
                    course_id: "go".into(),
                },
            ]
        })
        .collect()
}

/// Ids of the rust enrolments in `rust_and_go(n)` written after `before` events.
fn rust_ids(before: u64, n: u64) -> Vec<u64> {
    (0..n).map(|i| before + 2 * i + 1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_catches_up_goes_live_and_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = open(dir.path());
    let harness = Harness::new(events.clone());
    write(&events, rust_and_go(5)).await;
    let running: ListenerHandle = harness.runner().start().unwrap();
    harness.wait_for(5).await;
    write(&events, rust_and_go(3)).await;
    harness.wait_for(8).await;
    assert_eq!(running.stop().unwrap(), 16);
    assert_eq!(harness.seen(), rust_ids(0, 8));

    write(&events, rust_and_go(2)).await;
    let running = harness.runner().start().unwrap();
    harness.wait_for(10).await;
    running.stop().unwrap();
    let mut expected = rust_ids(0, 8);
    expected.extend(rust_ids(16, 2));
    assert_eq!(harness.seen(), expected, "each event once, in log order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handler_stops_the_runner_and_a_restart_handles_that_event_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = open(dir.path());
    let harness = Harness::new(events.clone());
    write(&events, rust_and_go(6)).await;
    harness.fail_once_on.store(7, Ordering::SeqCst);
    let running = harness.runner().start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running.is_finished() {
        assert!(Instant::now() < deadline, "the runner did not end");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let failed = running.join();
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(harness.seen(), rust_ids(0, 3));

    let running = harness.runner().start().unwrap();
    harness.wait_for(6).await;
    running.stop().unwrap();
    assert_eq!(
        harness.seen(),
        rust_ids(0, 6),
        "nothing lost, nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_runner_gets_past_a_passing_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = open(dir.path());
    let harness = Harness::new(events.clone());
    write(&events, rust_and_go(4)).await;
    harness.fail_once_on.store(3, Ordering::SeqCst);
    let retry = OnError::Retry {
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        max_attempts: None,
    };
    let running = harness.runner().on_error(retry).start().unwrap();
    harness.wait_for(4).await;
    running.stop().unwrap();
    assert_eq!(harness.seen(), rust_ids(0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_started_after_an_id_handles_only_later_events() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = open(dir.path());
    let harness = Harness::new(events.clone());
    write(&events, rust_and_go(4)).await;
    let running = harness.runner().start_after(4).start().unwrap();
    harness.wait_for(2).await;
    assert!(!running.is_finished());
    running.request_stop();
    assert_eq!(running.join().unwrap(), 8);
    assert_eq!(harness.seen(), vec![5, 7]);
}

#[test]
fn a_runner_needs_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = open(dir.path());
    let harness = Harness::new(events);
    let started = harness.runner().start();
    assert!(matches!(
        started,
        Err(evstore_disintegrate::Error::NoRuntime)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_saves_its_checkpoint_as_often_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = open(dir.path());
    let harness = Harness::new(events.clone());
    write(&events, rust_and_go(3)).await;
    let running = harness
        .runner()
        .checkpoint_every(1)
        .checkpoint_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    harness.wait_for(3).await;
    // Saved after each event, not only at a stop or once an hour: it
    // reaches past the last handled event (id 5, which is position 4).
    let name = format!("{}enrolments", evstore_disintegrate::CHECKPOINT_PREFIX);
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.load_checkpoint(&name).unwrap().is_none_or(|c| c < 5) {
        assert!(
            Instant::now() < deadline,
            "checkpoint {:?}",
            store.load_checkpoint(&name)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.stop().unwrap();
}

/// A listener whose handler awaits a timer.
struct Sleeper {
    query: StreamQuery<u64, CourseEvent>,
    handled: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl EventListener<u64, CourseEvent> for Sleeper {
    type Error = Unavailable;

    fn id(&self) -> &'static str {
        "sleeper"
    }

    fn query(&self) -> &StreamQuery<u64, CourseEvent> {
        &self.query
    }

    async fn handle(&self, _: PersistedEvent<u64, CourseEvent>) -> Result<(), Unavailable> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// On a single-threaded runtime the handler's futures run on the runner's
/// thread while the runtime's own thread drives the timers: a handler that
/// awaits a timer still completes.
#[tokio::test(flavor = "current_thread")]
async fn handlers_awaiting_timers_run_on_a_single_threaded_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = open(dir.path());
    write(&events, rust_and_go(3)).await;
    let handled = Arc::new(AtomicU64::new(0));
    let sleeper = Sleeper {
        query: disintegrate::query!(CourseEvent; course_id == "rust"),
        handled: Arc::clone(&handled),
    };
    let running = ListenerRunner::new(&events, sleeper).start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the handler's timer never fired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Joined off the runtime's thread, which must keep driving the timer
    // of a handler still under way.
    running.request_stop();
    let joined = tokio::task::spawn_blocking(move || running.join());
    assert!(joined.await.unwrap().unwrap() >= 5);
}
