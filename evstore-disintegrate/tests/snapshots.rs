//! Decision states saved by the snapshotter, and snapshots the log no
//! longer agrees with.

mod common;

use common::*;
use disintegrate::serde::json::Json;
use disintegrate::{DecisionError, EventStore, PersistedEvent, StatePart, StateSnapshotter};
use evstore_disintegrate::{
    decision_maker, EvstoreDecisionMaker, EvstoreSnapshotter, WithEvstoreSnapshot, SNAPSHOT_DIR,
};

type Decide = EvstoreDecisionMaker<DomainEvent, Json<DomainEvent>, WithEvstoreSnapshot>;

fn decisions(events: &Events, snapshots: &EvstoreSnapshotter) -> Decide {
    decision_maker(events.clone(), WithEvstoreSnapshot::new(snapshots.clone()))
}

/// Enrols `student` in the rust course.
async fn enroll(
    decide: &Decide,
    student: &str,
) -> Result<Vec<PersistedEvent<u64, DomainEvent>>, DecisionError<Refused>> {
    decide
        .make(Enroll {
            student: student.into(),
            course: "rust".into(),
        })
        .await
}

fn assert_full<T: std::fmt::Debug>(result: Result<T, DecisionError<Refused>>) {
    assert!(
        matches!(result, Err(DecisionError::Domain(Refused::Full))),
        "{result:?}"
    );
}

/// A course with `enrolled` students, each registered and enrolled through
/// the decision maker.
async fn course_with(decide: &Decide, seats: u32, enrolled: usize) {
    decide.make(CreateCourse("rust", seats)).await.unwrap();
    for s in 0..enrolled {
        decide.make(Register(format!("s{s}"))).await.unwrap();
        enroll(decide, &format!("s{s}")).await.unwrap();
    }
}

async fn saved_course(snapshots: &EvstoreSnapshotter) -> StatePart<u64, Course> {
    snapshots
        .load_snapshot(StatePart::new(0, Course::new("rust")))
        .await
}

fn snapshot_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir.join(SNAPSHOT_DIR)) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_built_from_more_than_every_events_is_saved_and_loaded_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = open(dir.path());
    let snapshots = EvstoreSnapshotter::new(store.clone(), 2);
    let decide = decisions(&events, &snapshots);
    course_with(&decide, 4, 3).await;

    let saved = saved_course(&snapshots).await;
    assert!(saved.version() > 0, "a snapshot of the course was saved");
    // States are saved when loaded: the last one was loaded for the third
    // enrolment, with two students in.
    assert_eq!(saved.seats_left, 2);
    assert!(saved.created);

    // Decisions on top of the snapshot still see the events after it.
    decide.make(Register("late".into())).await.unwrap();
    enroll(&decide, "late").await.unwrap();
    decide.make(Register("later".into())).await.unwrap();
    assert_full(enroll(&decide, "later").await);

    // And after a reopen.
    drop((decide, events, snapshots, store));
    let (store, events) = open(dir.path());
    let snapshots = EvstoreSnapshotter::new(store.clone(), 2);
    assert!(saved_course(&snapshots).await.version() > 0);
    let decide = decisions(&events, &snapshots);
    assert_full(enroll(&decide, "later").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_built_from_few_events_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = open(dir.path());
    let snapshots = EvstoreSnapshotter::new(store.clone(), 10);
    course_with(&decisions(&events, &snapshots), 4, 3).await;
    assert!(snapshot_files(dir.path()).is_empty());
    assert_eq!(saved_course(&snapshots).await.version(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_ignored_and_the_state_loaded_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = open(dir.path());
    let snapshots = EvstoreSnapshotter::new(store.clone(), 2);
    let decide = decisions(&events, &snapshots);
    course_with(&decide, 3, 3).await;
    let files = snapshot_files(dir.path());
    assert!(!files.is_empty());
    for file in &files {
        let mut bytes = std::fs::read(file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x55;
        std::fs::write(file, &bytes).unwrap();
    }
    assert_eq!(saved_course(&snapshots).await.version(), 0);
    decide.make(Register("late".into())).await.unwrap();
    assert_full(enroll(&decide, "late").await);
    for file in &files {
        std::fs::write(file, b"").unwrap();
    }
    assert_eq!(saved_course(&snapshots).await.version(), 0);
}

/// Snapshots copied into another store (a restore from an older copy, say)
/// whose log is shorter, or as long but with other events, are not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_the_log_does_not_agree_with_is_ignored() {
    let source = tempfile::tempdir().unwrap();
    {
        let (store, events) = open(source.path());
        let snapshots = EvstoreSnapshotter::new(store.clone(), 2);
        course_with(&decisions(&events, &snapshots), 5, 3).await;
        assert!(saved_course(&snapshots).await.version() > 0);
    }
    let copy_into = |target: &std::path::Path| {
        let to = target.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&to).unwrap();
        for file in snapshot_files(source.path()) {
            std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
        }
    };

    let shorter = tempfile::tempdir().unwrap();
    let (store, events) = open(shorter.path());
    events
        .append_without_validation(vec![DomainEvent::CourseCreated {
            course_id: "rust".into(),
            seats: 1,
        }])
        .await
        .unwrap();
    copy_into(shorter.path());
    let snapshots = EvstoreSnapshotter::new(store.clone(), 2);
    assert_eq!(saved_course(&snapshots).await.version(), 0);
    // The decision sees the one seat of this store's course, not the copy's.
    let decide = decisions(&events, &snapshots);
    decide.make(Register("a".into())).await.unwrap();
    enroll(&decide, "a").await.unwrap();

    let other = tempfile::tempdir().unwrap();
    let (store, events) = open(other.path());
    events
        .append_without_validation(
            (0..20)
                .map(|i| DomainEvent::StudentRegistered {
                    student_id: format!("x{i}"),
                })
                .collect(),
        )
        .await
        .unwrap();
    copy_into(other.path());
    let snapshots = EvstoreSnapshotter::new(store.clone(), 2);
    assert_eq!(saved_course(&snapshots).await.version(), 0);
}
