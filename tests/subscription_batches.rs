//! `Subscription::next_batch`: the same deliveries as `next_event`, in the
//! same order, whether the events are lent from the shared read-ahead or
//! read alone, opened when sealed and redacted when erased, and resumable
//! from the checkpoint after any batch.

use evstore::{
    EventBatch, EventData, ExpectedVersion, Filter, Options, RecordedEvent, Store, Subscription,
};
use std::time::Duration;

/// What a delivery is compared by.
type Seen = (u64, u64, String, Vec<u8>, bool);

fn seen(event: &RecordedEvent) -> Seen {
    (
        event.position,
        event.version,
        event.stream.to_string(),
        event.payload.to_vec(),
        event.erased,
    )
}

/// Everything deliverable now, one event per call.
fn one_by_one(subscription: &mut Subscription) -> Vec<Seen> {
    std::iter::from_fn(|| subscription.try_next().unwrap())
        .map(|e| seen(&e))
        .collect()
}

/// Everything deliverable now, by batches of at most `max`, checking each
/// batch's shape on the way.
fn by_batches(subscription: &mut Subscription, max: usize) -> Vec<Seen> {
    let mut all = Vec::new();
    loop {
        let batch: EventBatch = subscription
            .next_batch_timeout(max, Duration::ZERO)
            .unwrap();
        if batch.is_empty() {
            return all;
        }
        assert!(batch.len() <= max);
        assert_eq!(batch.iter().len(), batch.len());
        let last = batch.last().unwrap().position;
        assert!(subscription.checkpoint() > last);
        assert_eq!(batch.get(batch.len() - 1).map(|e| e.position), Some(last));
        assert!(batch.get(batch.len()).is_none());
        let lent: Vec<Seen> = batch.iter().map(seen).collect();
        let owned: Vec<Seen> = batch.into_vec().iter().map(seen).collect();
        assert_eq!(lent, owned);
        all.extend(lent);
    }
}

fn append_round(store: &Store, round: u32) {
    for i in 0..40u32 {
        let stream = format!("{}-{}", if i % 3 == 0 { "order" } else { "cart" }, i % 5);
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                &[EventData::new("E", format!("{round}/{i}").into_bytes())],
            )
            .unwrap();
    }
}

#[test]
fn batches_deliver_what_one_by_one_delivery_does_lent_or_read_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(8 << 10)).unwrap();
    for filter in [Filter::all(), Filter::stream_prefix("order-")] {
        let mut single = store.subscribe_all(0, filter.clone());
        // Several batch subscriptions near the end share what they read;
        // the sizes make batches end inside and across shared chunks.
        let mut batched: Vec<(usize, Subscription)> = [1, 7, 512]
            .into_iter()
            .map(|max| (max, store.subscribe_all(0, filter.clone())))
            .collect();
        let mut expected = Vec::new();
        let mut got = vec![Vec::new(); batched.len()];
        for round in 0..6 {
            append_round(&store, round);
            expected.extend(one_by_one(&mut single));
            for ((max, subscription), got) in batched.iter_mut().zip(&mut got) {
                got.extend(by_batches(subscription, *max));
            }
        }
        assert!(!expected.is_empty());
        for (got, (max, _)) in got.iter().zip(&batched) {
            assert_eq!(got, &expected, "batches of {max}");
        }
    }
    let stats = store.read_ahead_stats();
    assert!(stats.shared > 0, "no event was lent: {stats:?}");
}

#[test]
fn a_subscription_resumed_from_the_checkpoint_after_a_batch_misses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(8 << 10)).unwrap();
    for round in 0..4 {
        append_round(&store, round);
    }
    let filter = Filter::stream_prefix("order-");
    let expected = one_by_one(&mut store.subscribe_all(0, filter.clone()));
    let mut delivered = Vec::new();
    let mut from = 0;
    loop {
        let mut subscription = store.subscribe_all(from, filter.clone());
        let batch = subscription.next_batch_timeout(5, Duration::ZERO).unwrap();
        if batch.is_empty() {
            break;
        }
        delivered.extend(batch.iter().map(seen));
        from = subscription.checkpoint();
    }
    assert_eq!(delivered, expected);
}

#[test]
fn batches_open_sealed_events_and_redact_erased_ones_like_single_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().crypto_shredding(true)).unwrap();
    let personal = |n: u8| EventData::new("EmailChanged", vec![b'a' + n; 24]);
    for n in 0..4 {
        store
            .append(
                "user-1",
                ExpectedVersion::Any,
                &[personal(n).with_subject("user-1")],
            )
            .unwrap();
        store
            .append("plain", ExpectedVersion::Any, &[personal(n)])
            .unwrap();
    }
    let read = |store: &Store| {
        let mut a = store.subscribe_all(0, Filter::all());
        let mut b = store.subscribe_all(0, Filter::all());
        let single = one_by_one(&mut store.subscribe_all(0, Filter::all()));
        let (first, second) = (by_batches(&mut a, 3), by_batches(&mut b, 3));
        assert_eq!(first, single);
        assert_eq!(second, single);
        single
    };
    let before = read(&store);
    let sealed: Vec<&Seen> = before.iter().filter(|e| e.2 == "user-1").collect();
    assert_eq!(sealed.len(), 4);
    for (n, event) in sealed.iter().enumerate() {
        assert_eq!(event.3, vec![b'a' + n as u8; 24], "opened");
        assert!(!event.4);
    }

    assert!(store.forget("user-1").unwrap());
    store.erase_events("plain", 1, 2).unwrap();
    let after = read(&store);
    for event in &after {
        let erased = event.2 == "user-1" || (event.2 == "plain" && (1..=2).contains(&event.1));
        assert_eq!(event.4, erased, "{event:?}");
        if erased {
            assert!(event.3.is_empty());
        }
    }
}

#[test]
fn an_empty_batch_means_nothing_came_or_the_store_closed_with_everything_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut subscription = store.subscribe_all(0, Filter::all());
    assert!(subscription
        .next_batch_timeout(10, Duration::from_millis(1))
        .unwrap()
        .is_empty());
    append_round(&store, 0);
    assert!(subscription.next_batch(0).unwrap().is_empty());
    assert_eq!(subscription.checkpoint(), 0, "a batch of 0 takes nothing");
    let first = subscription.next_batch(15).unwrap();
    assert_eq!(first.len(), 15);
    let waiting = std::thread::spawn(move || {
        let mut rest = Vec::new();
        loop {
            // Blocks until the close: then the rest, then an empty batch.
            let batch = subscription.next_batch(usize::MAX).unwrap();
            if batch.is_empty() {
                return rest;
            }
            rest.extend(batch.iter().map(|e| e.position));
        }
    });
    store.close().unwrap();
    let rest = waiting.join().unwrap();
    assert_eq!(rest, (15..40).collect::<Vec<u64>>());
}

/// Batch streams (cargo feature `async`) deliver what the per-event stream
/// does, while writers on plain threads append and until the close.
#[cfg(feature = "async")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_streams_deliver_what_the_event_stream_does_through_the_close() {
    use futures_util::StreamExt;
    const GUARD: Duration = Duration::from_secs(60);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().segment_size(8 << 10)).unwrap();
    append_round(&store, 0);
    let filter = Filter::stream_prefix("cart-");
    let events = store.subscribe_all(0, filter.clone()).into_stream();
    let collect_events = tokio::spawn(async move {
        let mut events = events;
        let mut all = Vec::new();
        while let Some(event) = tokio::time::timeout(GUARD, events.next()).await.unwrap() {
            all.push(seen(&event.unwrap()));
        }
        all
    });
    let mut batch_tasks = Vec::new();
    for max in [0, 1, 7, 512] {
        let mut batches = store
            .subscribe_all(0, filter.clone())
            .into_stream()
            .batches(max);
        batch_tasks.push(tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(batch) = tokio::time::timeout(GUARD, batches.next()).await.unwrap() {
                let batch = batch.unwrap();
                assert!(!batch.is_empty() && batch.len() <= max.max(1));
                let last = batch.last().unwrap().position;
                assert!(batches.checkpoint() > last);
                all.extend(batch.iter().map(seen));
            }
            all
        }));
    }
    let writer = std::thread::spawn(move || {
        for round in 1..8 {
            append_round(&store, round);
        }
        store.close().unwrap();
    });
    let expected = collect_events.await.unwrap();
    writer.join().unwrap();
    assert_eq!(expected.len(), 8 * (0..40).filter(|i| i % 3 != 0).count());
    for task in batch_tasks {
        assert_eq!(task.await.unwrap(), expected);
    }
}
