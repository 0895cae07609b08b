//! The optional `metrics` and `tracing` features: the same figures reach a
//! `metrics` recorder, and the store's long steps show up as spans. Built
//! and run with `--all-features`.

#![allow(unused_imports)]

use evstore::{EventData, ExpectedVersion, Filter, Options, ProjectionOptions, Store};

#[cfg(any(feature = "metrics", feature = "tracing"))]
fn event() -> EventData {
    EventData::new("Noted", vec![1u8; 100])
}

#[cfg(feature = "metrics")]
#[test]
fn the_metrics_facade_receives_the_figures_store_metrics_reports() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let dir = tempfile::tempdir().unwrap();
    // Handles come from the recorder installed when the store opens.
    let store =
        metrics::with_local_recorder(&recorder, || Store::open(dir.path(), Options::default()))
            .unwrap();
    for _ in 0..3 {
        store.append("s", ExpectedVersion::Any, &[event()]).unwrap();
    }
    assert!(store
        .append("s", ExpectedVersion::NoStream, &[event()])
        .is_err());
    let _subscription = store.subscribe_all(1, Filter::all());
    let m = metrics::with_local_recorder(&recorder, || store.metrics());

    let published = snapshotter.snapshot().into_vec();
    let find = |name: &str, label: Option<(&str, &str)>| {
        published
            .iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && label.is_none_or(|(k, v)| {
                        key.key().labels().any(|l| l.key() == k && l.value() == v)
                    })
            })
            .map(|(_, _, _, value)| value)
            .unwrap_or_else(|| panic!("{name} {label:?} not published"))
    };
    let counter = |name, label| match find(name, label) {
        DebugValue::Counter(n) => *n,
        other => panic!("{name}: {other:?}"),
    };
    let samples = |name| match find(name, None) {
        DebugValue::Histogram(values) => values.iter().map(|v| v.into_inner()).collect::<Vec<_>>(),
        other => panic!("{name}: {other:?}"),
    };
    let gauge = |name| match find(name, None) {
        DebugValue::Gauge(value) => value.into_inner(),
        other => panic!("{name}: {other:?}"),
    };

    let sync = Some(("durability", "sync"));
    assert_eq!(
        counter("evstore_commits_total", sync),
        m.appends.durable.commits
    );
    assert_eq!(counter("evstore_events_appended_total", sync), 3);
    assert_eq!(
        counter("evstore_bytes_appended_total", sync),
        m.appends.durable.bytes
    );
    let refused = Some(("reason", "wrong_expected_version"));
    assert_eq!(counter("evstore_commits_refused_total", refused), 1);
    assert_eq!(counter("evstore_fsyncs_total", None), m.sync.latency.count);
    assert_eq!(
        counter("evstore_fsync_bytes_total", None),
        m.sync.bytes_per_sync.sum
    );
    assert_eq!(
        counter("evstore_group_commands_total", None),
        m.group_commit.commands_per_group.sum
    );
    match find("evstore_fsync_bytes", Some(("quantile", "1"))) {
        DebugValue::Gauge(max) => assert_eq!(max.into_inner(), m.sync.bytes_per_sync.max as f64),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        samples("evstore_fsync_seconds").len() as u64,
        m.sync.latency.count
    );
    assert_eq!(samples("evstore_commit_seconds").len(), 4);
    assert_eq!(gauge("evstore_durable_position"), 3.0);
    assert_eq!(gauge("evstore_subscriber_lag"), 2.0);
    assert_eq!(gauge("evstore_poisoned"), 0.0);
    let labelled = published.iter().any(|(key, _, _, _)| {
        key.key()
            .labels()
            .any(|l| l.key() == "store" && l.value() == dir.path().display().to_string())
    });
    assert!(labelled, "figures carry the store's directory");
}

#[cfg(feature = "tracing")]
#[test]
fn the_stores_long_steps_are_spans() {
    use std::sync::{Arc, Mutex};
    use tracing::span::{Attributes, Id};
    use tracing::Subscriber;
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    /// The name of every span, and the field names of every event.
    struct Seen(Arc<Mutex<Vec<String>>>);
    struct FieldNames(Vec<String>);
    impl tracing::field::Visit for FieldNames {
        fn record_debug(&mut self, field: &tracing::field::Field, _: &dyn std::fmt::Debug) {
            self.0.push(field.name().to_string());
        }
    }
    impl<S: Subscriber> Layer<S> for Seen {
        fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
            self.0
                .lock()
                .unwrap()
                .push(attrs.metadata().name().to_string());
        }
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            let mut fields = FieldNames(Vec::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0.join(","));
        }
    }
    let names = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Seen(Arc::clone(&names)));
    // Global: the projection's handler runs on a thread of its own.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .segment_size(16 << 10)
        .background_index_writes(false);
    let store = Store::open(dir.path(), options).unwrap();
    for _ in 0..200 {
        store.append("s", ExpectedVersion::Any, &[event()]).unwrap();
    }
    let projection = store
        .run_projection("p", ProjectionOptions::default(), |_| Ok(()))
        .unwrap();
    while projection.position() < 200 {
        std::thread::yield_now();
    }
    projection.stop().unwrap();
    store.truncate_stream("s", 100).unwrap();
    store.scavenge().unwrap();

    let names = names.lock().unwrap();
    for expected in [
        "evstore.recovery",
        "evstore.group_commit",
        "evstore.rollover",
        "evstore.index_file",
        "evstore.projection_handler",
        "evstore.scavenge_segment",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no {expected} in {names:?}"
        );
    }
    // Each group's event gives what it wrote and how long its sync took.
    assert!(
        names
            .iter()
            .any(|n| n == "message,appends,bytes,fsync_ns,replies"),
        "{:?}",
        names
            .iter()
            .filter(|n| n.contains("fsync"))
            .collect::<Vec<_>>()
    );
}
