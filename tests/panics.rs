//! A panic in any thread of the store poisons it with the panic's message:
//! every waiting and later appender, flush and subscriber gets that error;
//! none is left waiting, and reads keep working.
//!
//! Each test makes one thread panic once (`Options::inject_panic`): the
//! group-commit leader, the commit thread, the background flusher, the index-file thread, and a
//! read-only store's follower.
#![cfg(feature = "testing")]

use evstore::{
    Durability, Error, EventData, ExpectedVersion, Filter, Options, PanicPoint, Store, Subscription,
};
use std::time::Duration;

/// Long enough never to be reached unless a waiter is left hanging.
const HANG: Duration = Duration::from_secs(120);

fn event() -> EventData {
    EventData::new("E", vec![7u8; 100])
}

fn is_panic_poison<T: std::fmt::Debug>(result: &evstore::Result<T>, thread: &str) -> bool {
    match result {
        Err(Error::StorePoisoned { context, cause }) => {
            context.contains(thread) && cause.to_string().contains("injected panic")
        }
        _ => false,
    }
}

/// Reads the subscription to its end: it must end with the poison, not
/// wait for events that will never come.
fn subscriber_end(mut sub: Subscription) -> evstore::Result<Option<evstore::RecordedEvent>> {
    loop {
        match sub.next_timeout(HANG) {
            Ok(Some(_)) => continue,
            other => return other,
        }
    }
}

#[test]
fn a_leader_panic_answers_every_appender_and_subscriber_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options::default().inject_panic(PanicPoint::Leader),
    )
    .unwrap();
    let subscribers: Vec<_> = (0..3)
        .map(|_| {
            let sub = store.subscribe_all(0, Filter::all());
            std::thread::spawn(move || subscriber_end(sub))
        })
        .collect();
    let appenders: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                store.append(&format!("s-{t}"), ExpectedVersion::Any, &[event()])
            })
        })
        .collect();
    for a in appenders {
        let result = a.join().unwrap();
        assert!(is_panic_poison(&result, "leader"), "{result:?}");
    }
    for s in subscribers {
        let end = s.join().unwrap();
        assert!(is_panic_poison(&end, "leader"), "{end:?}");
    }
    let later = store.append("later", ExpectedVersion::Any, &[event()]);
    assert!(is_panic_poison(&later, "leader"), "{later:?}");
    assert!(is_panic_poison(&store.flush(), "leader"));
    // Reads still work: nothing was written.
    assert_eq!(store.last_position(), None);
    assert!(store
        .read_all(0, evstore::Direction::Forward, 10)
        .unwrap()
        .is_empty());
}

#[test]
fn a_commit_thread_panic_answers_every_appender_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        Options::default().inject_panic(PanicPoint::CommitThread),
    )
    .unwrap();
    // Appenders that overlap make a leading caller hand its queue to the
    // commit thread, which panics as it takes the queue over. Every
    // appender must then end with the cause instead of waiting.
    let appenders: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..100_000 {
                    store.append(&format!("s-{t}"), ExpectedVersion::Any, &[event()])?;
                }
                Err::<(), _>(Error::Closed)
            })
        })
        .collect();
    for a in appenders {
        let result = a.join().unwrap();
        assert!(is_panic_poison(&result, "commit thread"), "{result:?}");
    }
    let later = store.append("later", ExpectedVersion::Any, &[event()]);
    assert!(is_panic_poison(&later, "commit thread"), "{later:?}");
    assert!(is_panic_poison(&store.flush(), "commit thread"));
}

#[test]
fn a_flusher_panic_ends_background_durability_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .durability(Durability::Buffered)
        .flush_interval(Duration::from_millis(1))
        .inject_panic(PanicPoint::Flusher);
    let store = Store::open(dir.path(), options).unwrap();
    let sub = store
        .subscribe_all(0, Filter::all())
        .with_visibility(evstore::Visibility::Durable);
    let end = subscriber_end(sub);
    assert!(is_panic_poison(&end, "flusher"), "{end:?}");
    let append = store.append("s", ExpectedVersion::Any, &[event()]);
    assert!(is_panic_poison(&append, "flusher"), "{append:?}");
    assert!(is_panic_poison(&store.flush(), "flusher"));
}

#[test]
fn an_index_file_thread_panic_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .segment_size(4096)
        .inject_panic(PanicPoint::IndexWriter);
    let store = Store::open(dir.path(), options).unwrap();
    let sub = store.subscribe_all(0, Filter::all());
    let subscriber = std::thread::spawn(move || subscriber_end(sub));
    // Appends fill segments until one is sealed and its index file thread
    // panics; from then on appends are refused.
    let mut refused = None;
    for _ in 0..10_000 {
        match store.append("s", ExpectedVersion::Any, &[event()]) {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused: evstore::Result<()> = Err(refused.expect("appends were never refused"));
    assert!(is_panic_poison(&refused, "index-file"), "{refused:?}");
    let end = subscriber.join().unwrap();
    assert!(is_panic_poison(&end, "index-file"), "{end:?}");
}

#[test]
fn a_follower_panic_wakes_the_read_only_store_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path(), Options::default()).unwrap();
    writer
        .append("s", ExpectedVersion::Any, &[event()])
        .unwrap();
    let options = Options::default()
        .poll_interval(Duration::from_millis(1))
        .inject_panic(PanicPoint::Follower);
    let reader = Store::open_read_only(dir.path(), options).unwrap();
    let sub = reader.subscribe_all(0, Filter::all());
    let end = subscriber_end(sub);
    assert!(is_panic_poison(&end, "follower"), "{end:?}");
    assert!(is_panic_poison(&reader.refresh(), "follower"));
    // What it had read stays readable.
    assert_eq!(
        reader
            .read_all(0, evstore::Direction::Forward, 10)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_background_scavenger_panic_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .background_scavenge(Some(Duration::from_millis(1)))
        .inject_panic(PanicPoint::Scavenger);
    let store = Store::open(dir.path(), options).unwrap();
    let sub = store.subscribe_all(0, Filter::all());
    let end = subscriber_end(sub);
    assert!(is_panic_poison(&end, "scavenger"), "{end:?}");
    let append = store.append("s", ExpectedVersion::Any, &[event()]);
    assert!(is_panic_poison(&append, "scavenger"), "{append:?}");
}
