//! Decisions made through disintegrate's decision maker on evstore.

mod common;

use common::*;
use disintegrate::serde::json::Json;
use disintegrate::{DecisionError, EventStore, NoSnapshot, StreamItem};
use evstore::{Query, QueryItem};
use evstore_disintegrate::{decision_maker, Error, EvstoreDecisionMaker};
use futures::TryStreamExt;
use std::sync::Arc;

fn decisions(events: &Events) -> EvstoreDecisionMaker<DomainEvent, Json<DomainEvent>, NoSnapshot> {
    decision_maker(events.clone(), NoSnapshot)
}

fn refused<E: std::fmt::Debug>(result: Result<E, DecisionError<Refused>>) -> Refused {
    match result {
        Err(DecisionError::Domain(refused)) => refused,
        other => panic!("expected a domain refusal, got {other:?}"),
    }
}

fn is_conflict<E: std::fmt::Debug>(result: &Result<E, DecisionError<Refused>>) -> bool {
    match result {
        Err(DecisionError::StateStore(error)) => matches!(
            error.downcast_ref::<Error>(),
            Some(Error::Concurrency { .. })
        ),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_see_what_earlier_ones_wrote_also_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, events) = open(dir.path());
        let decide = decisions(&events);
        let written = decide.make(CreateCourse("rust", 2)).await.unwrap();
        assert_eq!(written[0].id(), 1);
        assert_eq!(
            refused(decide.make(CreateCourse("rust", 5)).await),
            Refused::CourseExists
        );
        decide.make(Register("ada".into())).await.unwrap();
        let enroll = || Enroll {
            student: "ada".into(),
            course: "rust".into(),
        };
        decide.make(enroll()).await.unwrap();
        assert_eq!(
            refused(decide.make(enroll()).await),
            Refused::AlreadyEnrolled
        );
    }
    let (_store, events) = open(dir.path());
    let decide = decisions(&events);
    let enroll = |student: &str| Enroll {
        student: student.into(),
        course: "rust".into(),
    };
    assert_eq!(
        refused(decide.make(enroll("ada")).await),
        Refused::AlreadyEnrolled
    );
    assert_eq!(
        refused(decide.make(enroll("bob")).await),
        Refused::NotRegistered
    );
    decide.make(Register("bob".into())).await.unwrap();
    decide.make(enroll("bob")).await.unwrap();
    decide.make(Register("cy".into())).await.unwrap();
    assert_eq!(refused(decide.make(enroll("cy")).await), Refused::Full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_at_the_head_it_started_from_and_ids_are_positions_plus_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = open(dir.path());
    let query = disintegrate::query!(CourseEvent; course_id == "rust");
    let items: Vec<StreamItem<u64, CourseEvent>> =
        events.stream(&query).try_collect().await.unwrap();
    assert!(matches!(items.as_slice(), [StreamItem::End(0)]));

    events
        .append_without_validation(vec![
            DomainEvent::CourseCreated {
                course_id: "go".into(),
                seats: 1,
            },
            DomainEvent::CourseCreated {
                course_id: "rust".into(),
                seats: 1,
            },
            DomainEvent::StudentRegistered {
                student_id: "ada".into(),
            },
        ])
        .await
        .unwrap();
    let mut stream = events.stream(&query);
    let first = stream.try_next().await.unwrap().unwrap();
    assert!(matches!(first, StreamItem::Event(ref e) if e.id() == 2));
    // Appended while the stream is open: after its head, so not served.
    events
        .append_without_validation(vec![DomainEvent::CourseClosed {
            course_id: "rust".into(),
        }])
        .await
        .unwrap();
    let rest: Vec<_> = stream.try_collect().await.unwrap();
    assert!(matches!(rest.as_slice(), [StreamItem::End(3)]), "{rest:?}");
    assert_eq!(store.last_position(), Some(3));
    assert_eq!(events.head(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_is_read_in_batches_without_losing_or_repeating_events() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = open(dir.path());
    let batch = |from: usize| -> Vec<DomainEvent> {
        (from..from + 700)
            .map(|i| {
                if i % 3 == 0 {
                    DomainEvent::StudentRegistered {
                        student_id: format!("s{i}"),
                    }
                } else {
                    DomainEvent::StudentEnrolled {
                        student_id: format!("s{i}"),
                        course_id: "big".into(),
                    }
                }
            })
            .collect()
    };
    events.append_without_validation(batch(0)).await.unwrap();
    events.append_without_validation(batch(700)).await.unwrap();
    let query = disintegrate::query!(CourseEvent; course_id == "big");
    let items: Vec<StreamItem<u64, CourseEvent>> =
        events.stream(&query).try_collect().await.unwrap();
    let ids: Vec<u64> = items.iter().map(StreamItem::id).collect();
    let expected: Vec<u64> = (0..1400u64)
        .filter(|i| i % 3 != 0)
        .map(|i| i + 1)
        .chain([1400])
        .collect();
    assert_eq!(ids, expected);
}

/// disintegrate's PostgreSQL back end narrows a filter's event types only by
/// the identifiers each type declares. The board's query is `course_id ==
/// rust` over `[CourseCreated, Announcement]`, and `Announcement` declares
/// no `course_id`: every announcement is part of every board's state, so a
/// new one must make a decision taken on the older state fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_narrow_only_the_event_types_that_declare_them() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = open(dir.path());
    events
        .append_without_validation(vec![
            DomainEvent::CourseCreated {
                course_id: "rust".into(),
                seats: 1,
            },
            DomainEvent::CourseCreated {
                course_id: "go".into(),
                seats: 1,
            },
            DomainEvent::Announcement {
                text: "welcome".into(),
            },
        ])
        .await
        .unwrap();
    let board = disintegrate::query!(BoardEvent; course_id == "rust");
    let items: Vec<StreamItem<u64, BoardEvent>> =
        events.stream(&board).try_collect().await.unwrap();
    let ids: Vec<u64> = items.iter().map(StreamItem::id).collect();
    assert_eq!(ids, [1, 3, 3], "the rust course, the announcement, the end");

    // A decision read the board up to id 3; then an announcement lands.
    events
        .append_without_validation(vec![DomainEvent::Announcement {
            text: "moved".into(),
        }])
        .await
        .unwrap();
    let stale = events
        .append(
            vec![DomainEvent::Announcement {
                text: "late".into(),
            }],
            board.clone(),
            3,
        )
        .await;
    assert!(
        matches!(stale, Err(Error::Concurrency { id: 4 })),
        "{stale:?}"
    );
    // The go course's creation is not on the rust board: no conflict.
    let from_go = events
        .append(
            vec![DomainEvent::CourseClosed {
                course_id: "go".into(),
            }],
            board.clone(),
            4,
        )
        .await;
    assert!(from_go.is_ok(), "{from_go:?}");
    events
        .append_without_validation(vec![DomainEvent::CourseCreated {
            course_id: "go2".into(),
            seats: 1,
        }])
        .await
        .unwrap();
    assert!(events.append(vec![], board.clone(), 5).await.is_ok());

    // Every identifier on every type would have let the stale decision in:
    // such a query never matches an announcement.
    let every_identifier_everywhere = Query::items([
        QueryItem::new()
            .types(["CourseCreated"])
            .tags(["course_id:rust"]),
        QueryItem::new()
            .types(["Announcement"])
            .tags(["course_id:rust"]),
    ]);
    let read = store
        .read_query_after(&every_identifier_everywhere, Some(2), 10)
        .unwrap();
    assert!(read.events.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_with_no_events_still_reports_a_stale_state() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = open(dir.path());
    let course = disintegrate::query!(CourseEvent; course_id == "rust");
    assert!(events
        .append(vec![], course.clone(), 0)
        .await
        .unwrap()
        .is_empty());
    events
        .append_without_validation(vec![DomainEvent::CourseCreated {
            course_id: "rust".into(),
            seats: 1,
        }])
        .await
        .unwrap();
    let stale = events.append(vec![], course.clone(), 0).await;
    assert!(
        matches!(stale, Err(Error::Concurrency { id: 1 })),
        "{stale:?}"
    );
    assert!(events.append(vec![], course, 1).await.unwrap().is_empty());
}

/// Many students race for the last seat of a course, round after round:
/// each decision reads the course and writes under the condition that
/// nothing it read has changed, so exactly one wins each round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_racing_decisions_on_one_seat_exactly_one_wins() {
    const ROUNDS: usize = 60;
    const RACERS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = open(dir.path());
    let decide = Arc::new(decisions(&events));
    for round in 0..ROUNDS {
        let course = format!("c{round}");
        events
            .append_without_validation(
                std::iter::once(DomainEvent::CourseCreated {
                    course_id: course.clone(),
                    seats: 1,
                })
                .chain((0..RACERS).map(|r| DomainEvent::StudentRegistered {
                    student_id: format!("{round}-{r}"),
                }))
                .collect(),
            )
            .await
            .unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|r| {
                let (decide, barrier, course) =
                    (Arc::clone(&decide), Arc::clone(&barrier), course.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    decide
                        .make(Enroll {
                            student: format!("{round}-{r}"),
                            course,
                        })
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            let result = racer.await.unwrap();
            if result.is_ok() {
                won += 1;
            } else {
                assert!(
                    is_conflict(&result)
                        || matches!(result, Err(DecisionError::Domain(Refused::Full))),
                    "{result:?}"
                );
            }
        }
        assert_eq!(won, 1, "round {round}");
    }
    let enrolled: Vec<StreamItem<u64, DomainEvent>> = events
        .stream(&disintegrate::query!(DomainEvent))
        .try_collect()
        .await
        .unwrap();
    let enrolments = enrolled
        .iter()
        .filter(|item| matches!(item, StreamItem::Event(e) if matches!(**e, DomainEvent::StudentEnrolled { .. })))
        .count();
    assert_eq!(enrolments, ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_identifiers_and_foreign_payloads_get_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = open(dir.path());
    // An identifier too long for a tag: refused, nothing written.
    let huge = DomainEvent::CourseCreated {
        course_id: "c".repeat(100_000),
        seats: 1,
    };
    let refused = events.append_without_validation(vec![huge]).await;
    assert!(
        matches!(
            refused,
            Err(Error::Store(evstore::Error::InvalidTag { .. }))
        ),
        "{refused:?}"
    );
    // A control character in an identifier: refused the same way.
    let control = DomainEvent::CourseClosed {
        course_id: "a\u{7}b".into(),
    };
    let refused = events.append_without_validation(vec![control]).await;
    assert!(matches!(
        refused,
        Err(Error::Store(evstore::Error::InvalidTag { .. }))
    ));
    assert_eq!(store.last_position(), None);

    // An event of a known type and tag whose payload is not the codec's:
    // the read fails with a decoding error, it does not panic or skip.
    store
        .append(
            "disintegrate",
            evstore::ExpectedVersion::Any,
            &[
                evstore::EventData::new("CourseClosed", &b"not json"[..])
                    .with_tags(["course_id:x"]),
            ],
        )
        .unwrap();
    let query = disintegrate::query!(CourseEvent; course_id == "x");
    let read: Result<Vec<StreamItem<u64, CourseEvent>>, _> =
        events.stream(&query).try_collect().await;
    assert!(matches!(read, Err(Error::Deserialization(_))), "{read:?}");
}

/// With a stream per entity, an entity's events can be read as a stream
/// and erased with evstore's own tools, and decisions still go by queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_to_the_streams_named_for_them_and_erasing_one_takes_it_out_of_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = open(dir.path());
    let events = events.with_stream_for(|event: &DomainEvent| match event {
        DomainEvent::CourseCreated { course_id, .. }
        | DomainEvent::CourseClosed { course_id }
        | DomainEvent::StudentEnrolled { course_id, .. } => format!("course-{course_id}"),
        DomainEvent::StudentRegistered { student_id } => format!("student-{student_id}"),
        DomainEvent::Announcement { .. } => "board".to_string(),
    });
    let written = events
        .append_without_validation(vec![
            DomainEvent::CourseCreated {
                course_id: "rust".into(),
                seats: 1,
            },
            DomainEvent::StudentRegistered {
                student_id: "ada".into(),
            },
            DomainEvent::CourseClosed {
                course_id: "rust".into(),
            },
        ])
        .await
        .unwrap();
    // Grouped by stream in one commit: the course's two events, then ada's.
    let ids: Vec<(u64, &str)> = written
        .iter()
        .map(|e| (e.id(), disintegrate::Event::name(&**e)))
        .collect();
    assert_eq!(
        ids,
        [
            (1, "CourseCreated"),
            (2, "CourseClosed"),
            (3, "StudentRegistered")
        ]
    );
    let course = store
        .read_stream("course-rust", 0, evstore::Direction::Forward, 10)
        .unwrap();
    let types: Vec<&str> = course.iter().map(|e| &*e.event_type).collect();
    assert_eq!(types, ["CourseCreated", "CourseClosed"]);
    assert_eq!(store.stream_version("student-ada").unwrap(), Some(0));

    // Ada is registered, as decisions see it; once her stream is erased,
    // she is not.
    let decide = decisions(&events);
    decide.make(CreateCourse("go", 1)).await.unwrap();
    let enroll = || Enroll {
        student: "ada".into(),
        course: "go".into(),
    };
    let ada = disintegrate::query!(StudentEvent; student_id == "ada");
    let seen = |items: Vec<StreamItem<u64, StudentEvent>>| {
        items
            .iter()
            .filter(|i| matches!(i, StreamItem::Event(_)))
            .count()
    };
    assert_eq!(seen(events.stream(&ada).try_collect().await.unwrap()), 1);
    store.erase_stream("student-ada").unwrap();
    assert_eq!(seen(events.stream(&ada).try_collect().await.unwrap()), 0);
    assert_eq!(refused(decide.make(enroll()).await), Refused::NotRegistered);
}

/// With crypto-shredding, forgetting one student erases her events'
/// payloads; a course's decisions read on without them instead of failing
/// to decode them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_students_events_are_left_out_of_other_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = evstore::Store::open(
        dir.path(),
        evstore::Options::default().crypto_shredding(true),
    )
    .unwrap();
    let events: Events =
        evstore_disintegrate::EvstoreEventStore::new(store.clone(), Json::<DomainEvent>::default())
            .with_stream_for(|event| match event {
                DomainEvent::StudentRegistered { student_id }
                | DomainEvent::StudentEnrolled { student_id, .. } => {
                    format!("student-{student_id}")
                }
                _ => "courses".to_string(),
            });
    let decide = decisions(&events);
    decide.make(CreateCourse("rust", 3)).await.unwrap();
    for student in ["ada", "bob"] {
        decide.make(Register(student.into())).await.unwrap();
        decide
            .make(Enroll {
                student: student.into(),
                course: "rust".into(),
            })
            .await
            .unwrap();
    }
    assert!(store.forget("student-ada").unwrap());
    let query = disintegrate::query!(CourseEvent; course_id == "rust");
    let items: Vec<StreamItem<u64, CourseEvent>> =
        events.stream(&query).try_collect().await.unwrap();
    let enrolled: Vec<String> = items
        .iter()
        .filter_map(|item| match item {
            StreamItem::Event(e) => match &**e {
                CourseEvent::StudentEnrolled { student_id, .. } => Some(student_id.clone()),
                _ => None,
            },
            StreamItem::End(_) => None,
        })
        .collect();
    assert_eq!(enrolled, ["bob"]);
    // A decision on the course still works.
    decide.make(Register("cy".into())).await.unwrap();
    decide
        .make(Enroll {
            student: "cy".into(),
            course: "rust".into(),
        })
        .await
        .unwrap();
}
