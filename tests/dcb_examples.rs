//! The examples of dcb.events (Dynamic Consistency Boundaries) as tests.
//!
//! Each command handler reads the events of a query, decides, and commits
//! its new events on the condition that nothing matching that query was
//! appended after the head of its read. Every Given/When/Then case of an
//! example runs twice: through a store (given events appended, the command
//! handled, the new events or the refusal checked), and through the
//! decision alone, fed the given events the query selects with their exact
//! ages.

use evstore::{
    AppendCondition, BincodeCodec, Codec, Commit, CommitResult, Direction, Durability, Error,
    EventData, ExpectedVersion, Options, Query, QueryItem, RecordedEvent, Store,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Commands, decisions and cases, shared by the examples
// ---------------------------------------------------------------------------

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// An event of an example: its type, tags and stream follow from its data.
trait ExampleEvent: Serialize + DeserializeOwned + Clone + Debug + PartialEq {
    fn event_type(&self) -> &'static str;
    fn tags(&self) -> Vec<String>;
    fn stream(&self) -> String;
}

fn event_data<E: ExampleEvent>(event: &E) -> EventData {
    let payload = BincodeCodec
        .encode(event)
        .unwrap_or_else(|e| panic!("{event:?} does not encode: {e}"));
    EventData::new(event.event_type(), payload).with_tags(event.tags())
}

/// An event as a decision sees it: its data and when it was written.
#[derive(Debug, Clone)]
struct Seen<E> {
    event: E,
    at_nanos: u64,
}

impl<E> Seen<E> {
    fn age(&self, now_nanos: u64) -> Duration {
        Duration::from_nanos(now_nanos.saturating_sub(self.at_nanos))
    }
}

fn seen<E: ExampleEvent>(recorded: &RecordedEvent) -> Seen<E> {
    let event: E = BincodeCodec.decode(&recorded.payload).unwrap_or_else(|e| {
        panic!(
            "the payload at position {} does not decode: {e}",
            recorded.position
        )
    });
    assert_eq!(
        event.event_type(),
        &*recorded.event_type,
        "event type at position {}",
        recorded.position
    );
    Seen {
        event,
        at_nanos: recorded.timestamp_nanos,
    }
}

/// Why a command was not carried out: a business rule, or the store.
#[derive(Debug)]
enum Failure<R> {
    Rule(R),
    Store(Error),
}

impl<R> From<Error> for Failure<R> {
    fn from(error: Error) -> Self {
        Failure::Store(error)
    }
}

fn is_condition_failure<R>(outcome: &Result<CommitResult, Failure<R>>) -> bool {
    matches!(
        outcome,
        Err(Failure::Store(Error::AppendConditionFailed { .. }))
    )
}

/// An example's command handler, split into what it reads and what it
/// decides from that.
trait Example {
    type Event: ExampleEvent;
    type Command: Debug;
    type Rule: Debug + PartialEq;

    /// The events the decision about `command` depends on.
    fn query(command: &Self::Command) -> Query;

    /// The new events, from the events `query` selects (in log order), at
    /// `now_nanos`.
    fn decide(
        history: &[Seen<Self::Event>],
        command: &Self::Command,
        now_nanos: u64,
    ) -> Result<Vec<Self::Event>, Self::Rule>;
}

/// New events and the condition under which they may be committed.
struct Decision<E> {
    events: Vec<E>,
    condition: AppendCondition,
}

fn decide_from_store<X: Example>(
    store: &Store,
    command: &X::Command,
    now_nanos: u64,
) -> Result<Decision<X::Event>, Failure<X::Rule>> {
    let query = X::query(command);
    let read = store.read_query_after(&query, None, usize::MAX)?;
    let history: Vec<Seen<X::Event>> = read.events.iter().map(seen).collect();
    let events = X::decide(&history, command, now_nanos).map_err(Failure::Rule)?;
    Ok(Decision {
        events,
        condition: AppendCondition::new(query, read.head),
    })
}

fn commit_decision<E: ExampleEvent>(
    store: &Store,
    decision: &Decision<E>,
) -> Result<CommitResult, Error> {
    // A commit names each stream once, so the events are grouped by stream,
    // in the order decided within each.
    let mut streams: Vec<(String, Vec<EventData>)> = Vec::new();
    for event in &decision.events {
        let stream = event.stream();
        match streams.iter_mut().find(|(name, _)| *name == stream) {
            Some((_, events)) => events.push(event_data(event)),
            None => streams.push((stream, vec![event_data(event)])),
        }
    }
    let commit = streams
        .into_iter()
        .fold(Commit::new(), |commit, (stream, events)| {
            commit.append(stream, ExpectedVersion::Any, events)
        })
        .condition(decision.condition.clone());
    store.commit(&commit)
}

/// Reads, decides and commits.
fn handle<X: Example>(
    store: &Store,
    command: &X::Command,
    now_nanos: u64,
) -> Result<CommitResult, Failure<X::Rule>> {
    let decision = decide_from_store::<X>(store, command, now_nanos)?;
    Ok(commit_decision(store, &decision)?)
}

/// [`handle`], again from a fresh read whenever another commit got in
/// between the read and the commit.
fn handle_with_retry<X: Example>(
    store: &Store,
    command: &X::Command,
    now_nanos: u64,
) -> Result<CommitResult, Failure<X::Rule>> {
    const MAX_ATTEMPTS: usize = 1000;
    for _ in 0..MAX_ATTEMPTS {
        let outcome = handle::<X>(store, command, now_nanos);
        if !is_condition_failure(&outcome) {
            return outcome;
        }
    }
    panic!("{command:?} lost the race {MAX_ATTEMPTS} times in a row");
}

fn wall_clock_nanos() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since_epoch.as_nanos()).expect("nanoseconds since 1970 fit in a u64")
}

fn open_store(durability: Durability) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().durability(durability)).unwrap();
    (dir, store)
}

/// A given event and how long ago it happened when the command runs.
struct Given<E> {
    event: E,
    age: Duration,
}

fn given<E>(event: E) -> Given<E> {
    Given {
        event,
        age: Duration::ZERO,
    }
}

fn aged<E>(event: E, age: Duration) -> Given<E> {
    Given { event, age }
}

#[derive(Debug)]
enum Then<E, R> {
    Event(E),
    Error(R),
}

struct Case<X: Example> {
    description: &'static str,
    given: Vec<Given<X::Event>>,
    when: X::Command,
    then: Then<X::Event, X::Rule>,
}

type Handler<X> = fn(
    &Store,
    &<X as Example>::Command,
    u64,
) -> Result<CommitResult, Failure<<X as Example>::Rule>>;

fn check_cases<X: Example>(cases: &[Case<X>]) {
    for case in cases {
        run_on_store(case, handle::<X>);
        run_on_decision(case);
    }
}

/// Runs `case` through a fresh store and `handler`.
///
/// The store stamps each event with the time it was written, so the given
/// events, written a moment apart, are about equally old: "now" makes the
/// newest of them as old as the case says. Where the age of an older one
/// matters too, [`run_on_decision`] covers it.
fn run_on_store<X: Example>(case: &Case<X>, handler: Handler<X>) {
    let (_dir, store) = open_store(Durability::Sync);
    for given in &case.given {
        store
            .append(
                &given.event.stream(),
                ExpectedVersion::Any,
                &[event_data(&given.event)],
            )
            .unwrap();
    }
    let now_nanos = match case.given.last() {
        Some(newest) => {
            let written = store.read_all(u64::MAX, Direction::Backward, 1).unwrap();
            let age = u64::try_from(newest.age.as_nanos()).unwrap();
            written[0].timestamp_nanos + age
        }
        None => wall_clock_nanos(),
    };
    let before = store.last_position();
    let outcome = handler(&store, &case.when, now_nanos);
    let added = store
        .read_all(before.map_or(0, |p| p + 1), Direction::Forward, 100)
        .unwrap();
    let description = case.description;
    match (&case.then, outcome) {
        (Then::Event(expected), Ok(result)) => {
            assert_eq!(added.len(), 1, "{description}: new events {added:?}");
            let recorded = &added[0];
            assert_eq!(
                (result.first_position, result.last_position),
                (recorded.position, recorded.position),
                "{description}: the commit's positions"
            );
            assert_recorded(expected, recorded, description);
        }
        (Then::Error(expected), Err(Failure::Rule(rule))) => {
            assert_eq!(&rule, expected, "{description}");
            assert!(
                added.is_empty(),
                "{description}: refused, yet wrote {added:?}"
            );
        }
        (then, outcome) => panic!("{description}: expected {then:?}, got {outcome:?}"),
    }
}

/// Runs `case` through the decision alone, with the given events the
/// command's query selects, each exactly as old as the case says.
fn run_on_decision<X: Example>(case: &Case<X>) {
    const NOW_NANOS: u64 = 1_750_000_000_000_000_000;
    let query = X::query(&case.when);
    let history: Vec<Seen<X::Event>> = case
        .given
        .iter()
        .filter(|g| query_matches(&query, g.event.event_type(), &g.event.tags()))
        .map(|g| Seen {
            event: g.event.clone(),
            at_nanos: NOW_NANOS - u64::try_from(g.age.as_nanos()).unwrap(),
        })
        .collect();
    let outcome = X::decide(&history, &case.when, NOW_NANOS);
    let expected = match &case.then {
        Then::Event(event) => Ok(vec![event.clone()]),
        Then::Error(rule) => Err(rule),
    };
    assert_eq!(
        outcome.as_ref(),
        expected.as_ref().map_err(|rule| *rule),
        "{} (decision alone)",
        case.description
    );
}

/// What the store's query answers, for events the test holds itself.
fn query_matches(query: &Query, event_type: &str, tags: &[String]) -> bool {
    query.query_items().is_none_or(|items| {
        items.iter().any(|item| {
            (item.event_types().is_empty() || item.event_types().iter().any(|t| t == event_type))
                && item.required_tags().iter().all(|tag| tags.contains(tag))
        })
    })
}

fn assert_recorded<E: ExampleEvent>(expected: &E, recorded: &RecordedEvent, description: &str) {
    assert_eq!(
        &*recorded.event_type,
        expected.event_type(),
        "{description}: event type"
    );
    assert_eq!(
        &*recorded.stream,
        expected.stream(),
        "{description}: stream"
    );
    let mut tags = expected.tags();
    tags.sort();
    let recorded_tags: Vec<String> = recorded.tags.iter().map(ToString::to_string).collect();
    assert_eq!(recorded_tags, tags, "{description}: tags");
    assert_eq!(
        &seen::<E>(recorded).event,
        expected,
        "{description}: payload"
    );
}

// ---------------------------------------------------------------------------
// Course subscriptions
// ---------------------------------------------------------------------------

mod course_subscriptions {
    use super::*;
    use std::sync::{Arc, Barrier};

    const MAX_COURSES_PER_STUDENT: usize = 5;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum CourseEvent {
        CourseDefined {
            course_id: String,
            capacity: u32,
        },
        CourseCapacityChanged {
            course_id: String,
            new_capacity: u32,
        },
        StudentSubscribedToCourse {
            student_id: String,
            course_id: String,
        },
    }

    fn course_tag(course_id: &str) -> String {
        format!("course:{course_id}")
    }

    fn student_tag(student_id: &str) -> String {
        format!("student:{student_id}")
    }

    impl ExampleEvent for CourseEvent {
        fn event_type(&self) -> &'static str {
            match self {
                CourseEvent::CourseDefined { .. } => "CourseDefined",
                CourseEvent::CourseCapacityChanged { .. } => "CourseCapacityChanged",
                CourseEvent::StudentSubscribedToCourse { .. } => "StudentSubscribedToCourse",
            }
        }

        fn tags(&self) -> Vec<String> {
            match self {
                CourseEvent::CourseDefined { course_id, .. }
                | CourseEvent::CourseCapacityChanged { course_id, .. } => {
                    vec![course_tag(course_id)]
                }
                CourseEvent::StudentSubscribedToCourse {
                    student_id,
                    course_id,
                } => vec![student_tag(student_id), course_tag(course_id)],
            }
        }

        fn stream(&self) -> String {
            match self {
                CourseEvent::CourseDefined { course_id, .. }
                | CourseEvent::CourseCapacityChanged { course_id, .. }
                | CourseEvent::StudentSubscribedToCourse { course_id, .. } => {
                    format!("course-{course_id}")
                }
            }
        }
    }

    #[derive(Debug)]
    enum CourseCommand {
        DefineCourse {
            course_id: String,
            capacity: u32,
        },
        ChangeCourseCapacity {
            course_id: String,
            new_capacity: u32,
        },
        SubscribeStudentToCourse {
            student_id: String,
            course_id: String,
        },
    }

    #[derive(Debug, PartialEq)]
    enum CourseRule {
        CourseAlreadyExists(String),
        CourseNotFound(String),
        CapacityUnchanged(u32),
        CourseFullyBooked(String),
        AlreadySubscribed,
        StudentCourseLimitReached,
    }

    /// What the commands decide from: about one course, and optionally one
    /// student.
    #[derive(Default)]
    struct CourseState {
        exists: bool,
        capacity: u32,
        course_subscriptions: usize,
        student_subscriptions: usize,
        already_subscribed: bool,
    }

    fn course_state(
        history: &[Seen<CourseEvent>],
        course: &str,
        student: Option<&str>,
    ) -> CourseState {
        let mut state = CourseState::default();
        for seen in history {
            match &seen.event {
                CourseEvent::CourseDefined {
                    course_id,
                    capacity,
                } if course_id == course => {
                    state.exists = true;
                    state.capacity = *capacity;
                }
                CourseEvent::CourseCapacityChanged {
                    course_id,
                    new_capacity,
                } if course_id == course => state.capacity = *new_capacity,
                CourseEvent::StudentSubscribedToCourse {
                    student_id,
                    course_id,
                } => {
                    let this_course = course_id == course;
                    let this_student = student == Some(student_id.as_str());
                    state.course_subscriptions += usize::from(this_course);
                    state.student_subscriptions += usize::from(this_student);
                    state.already_subscribed |= this_course && this_student;
                }
                _ => {}
            }
        }
        state
    }

    struct Courses;

    impl Example for Courses {
        type Event = CourseEvent;
        type Command = CourseCommand;
        type Rule = CourseRule;

        fn query(command: &CourseCommand) -> Query {
            match command {
                CourseCommand::DefineCourse { course_id, .. } => Query::items([QueryItem::new()
                    .types(["CourseDefined"])
                    .tags([course_tag(course_id)])]),
                CourseCommand::ChangeCourseCapacity { course_id, .. } => {
                    Query::items([QueryItem::new()
                        .types(["CourseDefined", "CourseCapacityChanged"])
                        .tags([course_tag(course_id)])])
                }
                CourseCommand::SubscribeStudentToCourse {
                    student_id,
                    course_id,
                } => Query::items([
                    QueryItem::new()
                        .types([
                            "CourseDefined",
                            "CourseCapacityChanged",
                            "StudentSubscribedToCourse",
                        ])
                        .tags([course_tag(course_id)]),
                    QueryItem::new()
                        .types(["StudentSubscribedToCourse"])
                        .tags([student_tag(student_id)]),
                ]),
            }
        }

        fn decide(
            history: &[Seen<CourseEvent>],
            command: &CourseCommand,
            _now_nanos: u64,
        ) -> Result<Vec<CourseEvent>, CourseRule> {
            match command {
                CourseCommand::DefineCourse {
                    course_id,
                    capacity,
                } => {
                    if course_state(history, course_id, None).exists {
                        return Err(CourseRule::CourseAlreadyExists(course_id.clone()));
                    }
                    Ok(vec![CourseEvent::CourseDefined {
                        course_id: course_id.clone(),
                        capacity: *capacity,
                    }])
                }
                CourseCommand::ChangeCourseCapacity {
                    course_id,
                    new_capacity,
                } => {
                    let state = course_state(history, course_id, None);
                    if !state.exists {
                        return Err(CourseRule::CourseNotFound(course_id.clone()));
                    }
                    if state.capacity == *new_capacity {
                        return Err(CourseRule::CapacityUnchanged(*new_capacity));
                    }
                    Ok(vec![CourseEvent::CourseCapacityChanged {
                        course_id: course_id.clone(),
                        new_capacity: *new_capacity,
                    }])
                }
                CourseCommand::SubscribeStudentToCourse {
                    student_id,
                    course_id,
                } => {
                    let state = course_state(history, course_id, Some(student_id));
                    if !state.exists {
                        return Err(CourseRule::CourseNotFound(course_id.clone()));
                    }
                    if state.course_subscriptions >= state.capacity as usize {
                        return Err(CourseRule::CourseFullyBooked(course_id.clone()));
                    }
                    if state.already_subscribed {
                        return Err(CourseRule::AlreadySubscribed);
                    }
                    if state.student_subscriptions >= MAX_COURSES_PER_STUDENT {
                        return Err(CourseRule::StudentCourseLimitReached);
                    }
                    Ok(vec![subscribed(student_id, course_id)])
                }
            }
        }
    }

    fn defined(course_id: &str, capacity: u32) -> CourseEvent {
        CourseEvent::CourseDefined {
            course_id: course_id.into(),
            capacity,
        }
    }

    fn subscribed(student_id: &str, course_id: &str) -> CourseEvent {
        CourseEvent::StudentSubscribedToCourse {
            student_id: student_id.into(),
            course_id: course_id.into(),
        }
    }

    fn define(course_id: &str, capacity: u32) -> CourseCommand {
        CourseCommand::DefineCourse {
            course_id: course_id.into(),
            capacity,
        }
    }

    fn change_capacity(course_id: &str, new_capacity: u32) -> CourseCommand {
        CourseCommand::ChangeCourseCapacity {
            course_id: course_id.into(),
            new_capacity,
        }
    }

    fn subscribe(student_id: &str, course_id: &str) -> CourseCommand {
        CourseCommand::SubscribeStudentToCourse {
            student_id: student_id.into(),
            course_id: course_id.into(),
        }
    }

    #[test]
    fn feature_1_register_courses() {
        check_cases::<Courses>(&[
            Case {
                description: "a course id is defined once",
                given: vec![given(defined("c1", 10))],
                when: define("c1", 15),
                then: Then::Error(CourseRule::CourseAlreadyExists("c1".into())),
            },
            Case {
                description: "a new course id is defined",
                given: vec![],
                when: define("c1", 15),
                then: Then::Event(defined("c1", 15)),
            },
        ]);
    }

    #[test]
    fn feature_2_change_course_capacity() {
        check_cases::<Courses>(&[
            Case {
                description: "an unknown course keeps no capacity",
                given: vec![],
                when: change_capacity("c0", 15),
                then: Then::Error(CourseRule::CourseNotFound("c0".into())),
            },
            Case {
                description: "a defined course gets another capacity",
                given: vec![given(defined("c1", 12))],
                when: change_capacity("c1", 15),
                then: Then::Event(CourseEvent::CourseCapacityChanged {
                    course_id: "c1".into(),
                    new_capacity: 15,
                }),
            },
        ]);
    }

    #[test]
    fn feature_3_subscribe_student_to_course() {
        check_cases::<Courses>(&[
            Case {
                description: "an unknown course takes no one",
                given: vec![],
                when: subscribe("s1", "c0"),
                then: Then::Error(CourseRule::CourseNotFound("c0".into())),
            },
            Case {
                description: "a full course takes no one",
                given: vec![
                    given(defined("c1", 3)),
                    given(subscribed("s1", "c1")),
                    given(subscribed("s2", "c1")),
                    given(subscribed("s3", "c1")),
                ],
                when: subscribe("s4", "c1"),
                then: Then::Error(CourseRule::CourseFullyBooked("c1".into())),
            },
            Case {
                description: "a student joins a course once",
                given: vec![given(defined("c1", 10)), given(subscribed("s1", "c1"))],
                when: subscribe("s1", "c1"),
                then: Then::Error(CourseRule::AlreadySubscribed),
            },
            Case {
                description: "a student in five courses joins no sixth",
                given: vec![
                    given(defined("c6", 10)),
                    given(subscribed("s1", "c1")),
                    given(subscribed("s1", "c2")),
                    given(subscribed("s1", "c3")),
                    given(subscribed("s1", "c4")),
                    given(subscribed("s1", "c5")),
                ],
                when: subscribe("s1", "c6"),
                then: Then::Error(CourseRule::StudentCourseLimitReached),
            },
            Case {
                description: "a student joins a course with seats left",
                given: vec![given(defined("c1", 10))],
                when: subscribe("s1", "c1"),
                then: Then::Event(subscribed("s1", "c1")),
            },
        ]);
    }

    #[test]
    fn a_decision_made_before_a_competing_commit_is_not_committed() {
        let (_dir, store) = open_store(Durability::Sync);
        let now = wall_clock_nanos();
        handle::<Courses>(&store, &define("c1", 1), now).unwrap();
        // Both decide from the same state: one seat left.
        let first = decide_from_store::<Courses>(&store, &subscribe("s1", "c1"), now).unwrap();
        let second = decide_from_store::<Courses>(&store, &subscribe("s2", "c1"), now).unwrap();
        let committed = commit_decision(&store, &first).unwrap();
        let refused = commit_decision(&store, &second);
        assert!(
            matches!(refused, Err(Error::AppendConditionFailed { position }) if position == committed.first_position),
            "{refused:?}"
        );
        // Decided again, the course is full.
        let retried = handle::<Courses>(&store, &subscribe("s2", "c1"), now);
        assert!(
            matches!(&retried, Err(Failure::Rule(CourseRule::CourseFullyBooked(c))) if c == "c1"),
            "{retried:?}"
        );
        // An event outside the decision's query does not stand in its way.
        let third = decide_from_store::<Courses>(&store, &change_capacity("c1", 2), now).unwrap();
        handle::<Courses>(&store, &define("c2", 1), now).unwrap();
        handle::<Courses>(&store, &subscribe("s9", "c2"), now).unwrap();
        commit_decision(&store, &third).unwrap();
        handle::<Courses>(&store, &subscribe("s2", "c1"), now).unwrap();
    }

    fn subscribe_concurrently(durability: Durability) {
        const THREADS: usize = 4;
        const ROUNDS: usize = 200;
        let (_dir, store) = open_store(durability);
        let now = wall_clock_nanos();
        for round in 0..ROUNDS {
            handle::<Courses>(&store, &define(&format!("r{round}"), 1), now).unwrap();
        }
        let barrier = Arc::new(Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = store.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let mut won = Vec::with_capacity(ROUNDS);
                    for round in 0..ROUNDS {
                        let course = format!("r{round}");
                        // A student per thread and round, so that no
                        // student reaches the limit of courses.
                        let student = format!("s{round}-{thread}");
                        barrier.wait();
                        let outcome = handle_with_retry::<Courses>(
                            &store,
                            &subscribe(&student, &course),
                            now,
                        );
                        match outcome {
                            Ok(_) => won.push(true),
                            Err(Failure::Rule(CourseRule::CourseFullyBooked(c))) if c == course => {
                                won.push(false);
                            }
                            Err(other) => panic!("{student} in {course}: {other:?}"),
                        }
                    }
                    won
                })
            })
            .collect();
        let results: Vec<Vec<bool>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        for round in 0..ROUNDS {
            let winners = results.iter().filter(|won| won[round]).count();
            assert_eq!(winners, 1, "round {round}: successful subscriptions");
            let course = format!("r{round}");
            let subscriptions = store
                .read_query(
                    &Query::items([QueryItem::new()
                        .types(["StudentSubscribedToCourse"])
                        .tags([course_tag(&course)])]),
                    0,
                    Direction::Forward,
                    usize::MAX,
                )
                .unwrap();
            assert_eq!(
                subscriptions.events.len(),
                1,
                "round {round}: subscriptions stored {:?}",
                subscriptions.events
            );
        }
    }

    #[test]
    fn concurrent_subscriptions_never_overbook_a_course() {
        subscribe_concurrently(Durability::Sync);
    }

    #[test]
    fn concurrent_subscriptions_never_overbook_a_course_buffered() {
        subscribe_concurrently(Durability::Buffered);
    }
}

// ---------------------------------------------------------------------------
// Unique username
// ---------------------------------------------------------------------------

mod unique_username {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum AccountEvent {
        AccountRegistered {
            username: String,
        },
        AccountClosed {
            username: String,
        },
        UsernameChanged {
            old_username: String,
            new_username: String,
        },
    }

    fn username_tag(username: &str) -> String {
        format!("username:{username}")
    }

    impl ExampleEvent for AccountEvent {
        fn event_type(&self) -> &'static str {
            match self {
                AccountEvent::AccountRegistered { .. } => "AccountRegistered",
                AccountEvent::AccountClosed { .. } => "AccountClosed",
                AccountEvent::UsernameChanged { .. } => "UsernameChanged",
            }
        }

        fn tags(&self) -> Vec<String> {
            match self {
                AccountEvent::AccountRegistered { username }
                | AccountEvent::AccountClosed { username } => vec![username_tag(username)],
                AccountEvent::UsernameChanged {
                    old_username,
                    new_username,
                } if old_username == new_username => vec![username_tag(old_username)],
                AccountEvent::UsernameChanged {
                    old_username,
                    new_username,
                } => vec![username_tag(old_username), username_tag(new_username)],
            }
        }

        fn stream(&self) -> String {
            match self {
                AccountEvent::AccountRegistered { username }
                | AccountEvent::AccountClosed { username }
                | AccountEvent::UsernameChanged {
                    old_username: username,
                    ..
                } => format!("account-{username}"),
            }
        }
    }

    #[derive(Debug)]
    struct RegisterAccount {
        username: String,
    }

    #[derive(Debug, PartialEq)]
    enum UsernameRule {
        UsernameClaimed(String),
    }

    /// Whether `username` is taken at `now_nanos`: a username given up (its
    /// account closed, or changed to another) stays taken for `retention`.
    fn is_claimed(
        history: &[Seen<AccountEvent>],
        username: &str,
        now_nanos: u64,
        retention: Duration,
    ) -> bool {
        history.iter().fold(false, |_, seen| {
            let retained = !retention.is_zero() && seen.age(now_nanos) <= retention;
            match &seen.event {
                AccountEvent::AccountRegistered { .. } => true,
                AccountEvent::AccountClosed { .. } => retained,
                AccountEvent::UsernameChanged { new_username, .. } => {
                    new_username == username || retained
                }
            }
        })
    }

    fn decide_registration(
        history: &[Seen<AccountEvent>],
        command: &RegisterAccount,
        now_nanos: u64,
        retention: Duration,
    ) -> Result<Vec<AccountEvent>, UsernameRule> {
        if is_claimed(history, &command.username, now_nanos, retention) {
            return Err(UsernameRule::UsernameClaimed(command.username.clone()));
        }
        Ok(vec![registered(&command.username)])
    }

    /// Features 1 to 3: a username given up is free at once.
    struct ImmediateRelease;

    /// Feature 4: a username given up stays taken for three days.
    struct ThreeDayRetention;

    impl Example for ImmediateRelease {
        type Event = AccountEvent;
        type Command = RegisterAccount;
        type Rule = UsernameRule;

        fn query(command: &RegisterAccount) -> Query {
            Query::tagged([username_tag(&command.username)])
        }

        fn decide(
            history: &[Seen<AccountEvent>],
            command: &RegisterAccount,
            now_nanos: u64,
        ) -> Result<Vec<AccountEvent>, UsernameRule> {
            decide_registration(history, command, now_nanos, Duration::ZERO)
        }
    }

    impl Example for ThreeDayRetention {
        type Event = AccountEvent;
        type Command = RegisterAccount;
        type Rule = UsernameRule;

        fn query(command: &RegisterAccount) -> Query {
            Query::tagged([username_tag(&command.username)])
        }

        fn decide(
            history: &[Seen<AccountEvent>],
            command: &RegisterAccount,
            now_nanos: u64,
        ) -> Result<Vec<AccountEvent>, UsernameRule> {
            decide_registration(history, command, now_nanos, 3 * DAY)
        }
    }

    fn registered(username: &str) -> AccountEvent {
        AccountEvent::AccountRegistered {
            username: username.into(),
        }
    }

    fn closed(username: &str) -> AccountEvent {
        AccountEvent::AccountClosed {
            username: username.into(),
        }
    }

    fn changed(old_username: &str, new_username: &str) -> AccountEvent {
        AccountEvent::UsernameChanged {
            old_username: old_username.into(),
            new_username: new_username.into(),
        }
    }

    fn register(username: &str) -> RegisterAccount {
        RegisterAccount {
            username: username.into(),
        }
    }

    fn claimed(username: &str) -> UsernameRule {
        UsernameRule::UsernameClaimed(username.into())
    }

    #[test]
    fn feature_1_globally_unique_username() {
        check_cases::<ImmediateRelease>(&[
            Case {
                description: "a registered username is taken",
                given: vec![given(registered("u1"))],
                when: register("u1"),
                then: Then::Error(claimed("u1")),
            },
            Case {
                description: "an unused username is free",
                given: vec![],
                when: register("u1"),
                then: Then::Event(registered("u1")),
            },
        ]);
    }

    #[test]
    fn feature_2_release_usernames() {
        check_cases::<ImmediateRelease>(&[Case {
            description: "the username of a closed account is free",
            given: vec![given(registered("u1")), given(closed("u1"))],
            when: register("u1"),
            then: Then::Event(registered("u1")),
        }]);
    }

    #[test]
    fn feature_3_allow_changing_of_usernames() {
        check_cases::<ImmediateRelease>(&[
            Case {
                description: "a username renamed away is free",
                given: vec![given(registered("u1")), given(changed("u1", "u1changed"))],
                when: register("u1"),
                then: Then::Event(registered("u1")),
            },
            Case {
                description: "a username another was renamed to is taken",
                given: vec![given(registered("u1")), given(changed("u1", "u1changed"))],
                when: register("u1changed"),
                then: Then::Error(claimed("u1changed")),
            },
        ]);
    }

    #[test]
    fn feature_4_username_retention() {
        check_cases::<ThreeDayRetention>(&[
            Case {
                description: "the username of an account closed three days ago is still taken",
                given: vec![aged(registered("u1"), 4 * DAY), aged(closed("u1"), 3 * DAY)],
                when: register("u1"),
                then: Then::Error(claimed("u1")),
            },
            Case {
                description: "a username renamed away three days ago is still taken",
                given: vec![
                    aged(registered("u1"), 4 * DAY),
                    aged(changed("u1", "u1changed"), 3 * DAY),
                ],
                when: register("u1"),
                then: Then::Error(claimed("u1")),
            },
            Case {
                description: "the username of an account closed four days ago is free",
                given: vec![aged(registered("u1"), 4 * DAY), aged(closed("u1"), 4 * DAY)],
                when: register("u1"),
                then: Then::Event(registered("u1")),
            },
            Case {
                description: "a username renamed away four days ago is free",
                given: vec![
                    aged(registered("u1"), 4 * DAY),
                    aged(changed("u1", "u1changed"), 4 * DAY),
                ],
                when: register("u1"),
                then: Then::Event(registered("u1")),
            },
        ]);
    }
}

// ---------------------------------------------------------------------------
// Invoice number
// ---------------------------------------------------------------------------

mod invoice_number {
    use super::*;
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct InvoiceCreated {
        invoice_number: u64,
        invoice_data: BTreeMap<String, String>,
    }

    impl ExampleEvent for InvoiceCreated {
        fn event_type(&self) -> &'static str {
            "InvoiceCreated"
        }

        fn tags(&self) -> Vec<String> {
            vec![format!("invoice:{}", self.invoice_number)]
        }

        fn stream(&self) -> String {
            format!("invoice-{}", self.invoice_number)
        }
    }

    #[derive(Debug)]
    struct CreateInvoice {
        invoice_data: BTreeMap<String, String>,
    }

    struct Invoices;

    impl Example for Invoices {
        type Event = InvoiceCreated;
        type Command = CreateInvoice;
        type Rule = Infallible;

        fn query(_command: &CreateInvoice) -> Query {
            Query::items([QueryItem::new().types(["InvoiceCreated"])])
        }

        fn decide(
            history: &[Seen<InvoiceCreated>],
            command: &CreateInvoice,
            _now_nanos: u64,
        ) -> Result<Vec<InvoiceCreated>, Infallible> {
            let next = history
                .iter()
                .fold(1, |_, seen| seen.event.invoice_number + 1);
            Ok(vec![InvoiceCreated {
                invoice_number: next,
                invoice_data: command.invoice_data.clone(),
            }])
        }
    }

    /// The same decision from the newest invoice alone, read backwards: the
    /// cost does not grow with the number of invoices.
    fn create_invoice_from_the_newest(
        store: &Store,
        command: &CreateInvoice,
        now_nanos: u64,
    ) -> Result<CommitResult, Failure<Infallible>> {
        let query = Invoices::query(command);
        let read = store.read_query(&query, u64::MAX, Direction::Backward, 1)?;
        let history: Vec<Seen<InvoiceCreated>> = read.events.iter().map(seen).collect();
        let events = Invoices::decide(&history, command, now_nanos).map_err(Failure::Rule)?;
        let decision = Decision {
            events,
            condition: AppendCondition::new(query, read.head),
        };
        Ok(commit_decision(store, &decision)?)
    }

    fn data(key: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(key.to_string(), value.to_string())])
    }

    fn cases() -> Vec<Case<Invoices>> {
        vec![
            Case {
                description: "the first invoice is number 1",
                given: vec![],
                when: CreateInvoice {
                    invoice_data: data("foo", "bar"),
                },
                then: Then::Event(InvoiceCreated {
                    invoice_number: 1,
                    invoice_data: data("foo", "bar"),
                }),
            },
            Case {
                description: "the next invoice follows the last",
                given: vec![given(InvoiceCreated {
                    invoice_number: 1,
                    invoice_data: data("foo", "bar"),
                })],
                when: CreateInvoice {
                    invoice_data: data("bar", "baz"),
                },
                then: Then::Event(InvoiceCreated {
                    invoice_number: 2,
                    invoice_data: data("bar", "baz"),
                }),
            },
        ]
    }

    #[test]
    fn invoices_are_numbered_in_sequence() {
        check_cases::<Invoices>(&cases());
    }

    #[test]
    fn invoices_are_numbered_in_sequence_reading_only_the_newest() {
        for case in &cases() {
            run_on_store(case, create_invoice_from_the_newest);
        }
    }

    #[test]
    fn concurrently_created_invoices_leave_no_gap_and_no_duplicate() {
        const THREADS: usize = 4;
        const INVOICES_PER_THREAD: usize = 25;
        let (_dir, store) = open_store(Durability::Sync);
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..INVOICES_PER_THREAD {
                        let command = CreateInvoice {
                            invoice_data: data("issuer", &format!("{thread}-{i}")),
                        };
                        // Half of them decide from the newest invoice only.
                        let mut attempts = 0;
                        loop {
                            attempts += 1;
                            assert!(attempts <= 1000, "{command:?} kept losing the race");
                            let outcome = if i % 2 == 0 {
                                handle::<Invoices>(&store, &command, 0)
                            } else {
                                create_invoice_from_the_newest(&store, &command, 0)
                            };
                            if !is_condition_failure(&outcome) {
                                outcome.unwrap();
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let all = store
            .read_query(
                &Invoices::query(&CreateInvoice {
                    invoice_data: BTreeMap::new(),
                }),
                0,
                Direction::Forward,
                usize::MAX,
            )
            .unwrap();
        let numbers: Vec<u64> = all
            .events
            .iter()
            .map(|e| seen::<InvoiceCreated>(e).event.invoice_number)
            .collect();
        let expected: Vec<u64> = (1..=(THREADS * INVOICES_PER_THREAD) as u64).collect();
        assert_eq!(numbers, expected);
    }
}

// ---------------------------------------------------------------------------
// Opt-in token
// ---------------------------------------------------------------------------

mod opt_in_token {
    use super::*;

    const OTP_LIFETIME: Duration = Duration::from_secs(60 * 60);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum SignUpEvent {
        SignUpInitiated {
            email_address: String,
            otp: String,
            name: String,
        },
        SignUpConfirmed {
            email_address: String,
            otp: String,
            name: String,
        },
    }

    impl ExampleEvent for SignUpEvent {
        fn event_type(&self) -> &'static str {
            match self {
                SignUpEvent::SignUpInitiated { .. } => "SignUpInitiated",
                SignUpEvent::SignUpConfirmed { .. } => "SignUpConfirmed",
            }
        }

        fn tags(&self) -> Vec<String> {
            match self {
                SignUpEvent::SignUpInitiated {
                    email_address, otp, ..
                }
                | SignUpEvent::SignUpConfirmed {
                    email_address, otp, ..
                } => vec![format!("email:{email_address}"), format!("otp:{otp}")],
            }
        }

        fn stream(&self) -> String {
            match self {
                SignUpEvent::SignUpInitiated { email_address, .. }
                | SignUpEvent::SignUpConfirmed { email_address, .. } => {
                    format!("signup-{email_address}")
                }
            }
        }
    }

    #[derive(Debug)]
    struct ConfirmSignUp {
        email_address: String,
        otp: String,
    }

    #[derive(Debug, PartialEq)]
    enum SignUpRule {
        NoPendingSignUp,
        OtpAlreadyUsed,
        OtpExpired,
    }

    struct PendingSignUp {
        name: String,
        used: bool,
        expired: bool,
    }

    struct SignUps;

    impl Example for SignUps {
        type Event = SignUpEvent;
        type Command = ConfirmSignUp;
        type Rule = SignUpRule;

        fn query(command: &ConfirmSignUp) -> Query {
            // Both tags: a token only counts for the address it was sent to.
            Query::tagged([
                format!("email:{}", command.email_address),
                format!("otp:{}", command.otp),
            ])
        }

        fn decide(
            history: &[Seen<SignUpEvent>],
            command: &ConfirmSignUp,
            now_nanos: u64,
        ) -> Result<Vec<SignUpEvent>, SignUpRule> {
            let mut pending: Option<PendingSignUp> = None;
            for seen in history {
                match &seen.event {
                    SignUpEvent::SignUpInitiated { name, .. } => {
                        pending = Some(PendingSignUp {
                            name: name.clone(),
                            used: false,
                            expired: seen.age(now_nanos) > OTP_LIFETIME,
                        });
                    }
                    SignUpEvent::SignUpConfirmed { .. } => {
                        if let Some(pending) = &mut pending {
                            pending.used = true;
                        }
                    }
                }
            }
            let pending = pending.ok_or(SignUpRule::NoPendingSignUp)?;
            if pending.used {
                return Err(SignUpRule::OtpAlreadyUsed);
            }
            if pending.expired {
                return Err(SignUpRule::OtpExpired);
            }
            Ok(vec![SignUpEvent::SignUpConfirmed {
                email_address: command.email_address.clone(),
                otp: command.otp.clone(),
                name: pending.name,
            }])
        }
    }

    const JOHN: &str = "john.doe@example.com";
    const JANE: &str = "jane.doe@example.com";

    fn initiated(email_address: &str, otp: &str) -> SignUpEvent {
        SignUpEvent::SignUpInitiated {
            email_address: email_address.into(),
            otp: otp.into(),
            name: "John Doe".into(),
        }
    }

    fn confirmed(email_address: &str, otp: &str) -> SignUpEvent {
        SignUpEvent::SignUpConfirmed {
            email_address: email_address.into(),
            otp: otp.into(),
            name: "John Doe".into(),
        }
    }

    fn confirm(email_address: &str, otp: &str) -> ConfirmSignUp {
        ConfirmSignUp {
            email_address: email_address.into(),
            otp: otp.into(),
        }
    }

    #[test]
    fn feature_1_simple_one_time_password() {
        check_cases::<SignUps>(&[
            Case {
                description: "a token never sent confirms nothing",
                given: vec![],
                when: confirm(JOHN, "000000"),
                then: Then::Error(SignUpRule::NoPendingSignUp),
            },
            Case {
                description: "a token sent to another address confirms nothing",
                given: vec![given(initiated(JOHN, "111111"))],
                when: confirm(JANE, "111111"),
                then: Then::Error(SignUpRule::NoPendingSignUp),
            },
            Case {
                description: "a token confirms once",
                given: vec![
                    given(initiated(JOHN, "222222")),
                    given(confirmed(JOHN, "222222")),
                ],
                when: confirm(JOHN, "222222"),
                then: Then::Error(SignUpRule::OtpAlreadyUsed),
            },
            Case {
                description: "the token sent confirms the sign-up",
                given: vec![given(initiated(JOHN, "444444"))],
                when: confirm(JOHN, "444444"),
                then: Then::Event(confirmed(JOHN, "444444")),
            },
        ]);
    }

    #[test]
    fn feature_2_expiring_one_time_password() {
        check_cases::<SignUps>(&[Case {
            description: "an old sign-up does not answer another token",
            given: vec![aged(initiated(JOHN, "333333"), 61 * MINUTE)],
            when: confirm(JOHN, "000000"),
            then: Then::Error(SignUpRule::NoPendingSignUp),
        }]);
    }

    /// The example's own case confirms another token; these confirm the
    /// token that was sent, on both sides of its lifetime.
    #[test]
    fn feature_2_the_sent_token_expires_after_its_lifetime() {
        check_cases::<SignUps>(&[
            Case {
                description: "a token older than an hour confirms nothing",
                given: vec![aged(initiated(JOHN, "333333"), 61 * MINUTE)],
                when: confirm(JOHN, "333333"),
                then: Then::Error(SignUpRule::OtpExpired),
            },
            Case {
                description: "a token an hour old still confirms",
                given: vec![aged(initiated(JOHN, "333333"), 60 * MINUTE)],
                when: confirm(JOHN, "333333"),
                then: Then::Event(confirmed(JOHN, "333333")),
            },
        ]);
    }
}

// ---------------------------------------------------------------------------
// Prevent record duplication
// ---------------------------------------------------------------------------

mod prevent_record_duplication {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct OrderPlaced {
        order_id: String,
        idempotency_token: String,
    }

    fn token_tag(token: &str) -> String {
        format!("idempotency:{token}")
    }

    impl ExampleEvent for OrderPlaced {
        fn event_type(&self) -> &'static str {
            "OrderPlaced"
        }

        fn tags(&self) -> Vec<String> {
            vec![
                format!("order:{}", self.order_id),
                token_tag(&self.idempotency_token),
            ]
        }

        fn stream(&self) -> String {
            format!("order-{}", self.order_id)
        }
    }

    #[derive(Debug)]
    struct PlaceOrder {
        order_id: String,
        idempotency_token: String,
    }

    #[derive(Debug, PartialEq)]
    enum OrderRule {
        ReSubmission,
    }

    struct Orders;

    impl Example for Orders {
        type Event = OrderPlaced;
        type Command = PlaceOrder;
        type Rule = OrderRule;

        fn query(command: &PlaceOrder) -> Query {
            Query::items([QueryItem::new()
                .types(["OrderPlaced"])
                .tags([token_tag(&command.idempotency_token)])])
        }

        fn decide(
            history: &[Seen<OrderPlaced>],
            command: &PlaceOrder,
            _now_nanos: u64,
        ) -> Result<Vec<OrderPlaced>, OrderRule> {
            if !history.is_empty() {
                return Err(OrderRule::ReSubmission);
            }
            Ok(vec![placed(&command.order_id, &command.idempotency_token)])
        }
    }

    fn placed(order_id: &str, idempotency_token: &str) -> OrderPlaced {
        OrderPlaced {
            order_id: order_id.into(),
            idempotency_token: idempotency_token.into(),
        }
    }

    fn place(order_id: &str, idempotency_token: &str) -> PlaceOrder {
        PlaceOrder {
            order_id: order_id.into(),
            idempotency_token: idempotency_token.into(),
        }
    }

    #[test]
    fn an_idempotency_token_places_one_order() {
        check_cases::<Orders>(&[
            Case {
                description: "a token already used places nothing",
                given: vec![given(placed("o12345", "11111"))],
                when: place("o54321", "11111"),
                then: Then::Error(OrderRule::ReSubmission),
            },
            Case {
                description: "a fresh token places the order",
                given: vec![given(placed("o12345", "11111"))],
                when: place("o54321", "22222"),
                then: Then::Event(placed("o54321", "22222")),
            },
        ]);
    }
}

// ---------------------------------------------------------------------------
// Dynamic product price
// ---------------------------------------------------------------------------

mod dynamic_product_price {
    use super::*;

    /// How long a replaced price is still honoured.
    const GRACE_PERIOD: Duration = Duration::from_secs(10 * 60);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct OrderedItem {
        product_id: String,
        price: u32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum ProductEvent {
        ProductDefined { product_id: String, price: u32 },
        ProductPriceChanged { product_id: String, new_price: u32 },
        ProductOrdered { product_id: String, price: u32 },
        ProductsOrdered { items: Vec<OrderedItem> },
    }

    fn product_tag(product_id: &str) -> String {
        format!("product:{product_id}")
    }

    impl ExampleEvent for ProductEvent {
        fn event_type(&self) -> &'static str {
            match self {
                ProductEvent::ProductDefined { .. } => "ProductDefined",
                ProductEvent::ProductPriceChanged { .. } => "ProductPriceChanged",
                ProductEvent::ProductOrdered { .. } => "ProductOrdered",
                ProductEvent::ProductsOrdered { .. } => "ProductsOrdered",
            }
        }

        fn tags(&self) -> Vec<String> {
            match self {
                ProductEvent::ProductDefined { product_id, .. }
                | ProductEvent::ProductPriceChanged { product_id, .. }
                | ProductEvent::ProductOrdered { product_id, .. } => vec![product_tag(product_id)],
                ProductEvent::ProductsOrdered { items } => {
                    // A product ordered twice in one order is tagged once.
                    let mut tags: Vec<String> =
                        items.iter().map(|i| product_tag(&i.product_id)).collect();
                    tags.sort();
                    tags.dedup();
                    tags
                }
            }
        }

        fn stream(&self) -> String {
            match self {
                ProductEvent::ProductDefined { product_id, .. }
                | ProductEvent::ProductPriceChanged { product_id, .. }
                | ProductEvent::ProductOrdered { product_id, .. } => {
                    format!("product-{product_id}")
                }
                ProductEvent::ProductsOrdered { .. } => "orders".into(),
            }
        }
    }

    #[derive(Debug)]
    enum ProductCommand {
        OrderProduct {
            product_id: String,
            displayed_price: u32,
        },
        OrderProducts {
            items: Vec<(String, u32)>,
        },
    }

    #[derive(Debug, PartialEq)]
    enum PriceRule {
        InvalidPrice(String),
    }

    /// The prices a product can be ordered at: the one in force when the
    /// grace period began, and every one set since.
    #[derive(Default)]
    struct ValidPrices {
        before_grace: Option<u32>,
        within_grace: Vec<u32>,
    }

    impl ValidPrices {
        fn of(history: &[Seen<ProductEvent>], product: &str, now_nanos: u64) -> Self {
            let mut prices = ValidPrices::default();
            for seen in history {
                let recent = seen.age(now_nanos) <= GRACE_PERIOD;
                match &seen.event {
                    ProductEvent::ProductDefined { product_id, price } if product_id == product => {
                        prices = if recent {
                            ValidPrices {
                                before_grace: None,
                                within_grace: vec![*price],
                            }
                        } else {
                            ValidPrices {
                                before_grace: Some(*price),
                                within_grace: Vec::new(),
                            }
                        };
                    }
                    ProductEvent::ProductPriceChanged {
                        product_id,
                        new_price,
                    } if product_id == product => {
                        if recent {
                            prices.within_grace.push(*new_price);
                        } else {
                            prices.before_grace = Some(*new_price);
                        }
                    }
                    _ => {}
                }
            }
            prices
        }

        fn accepts(&self, price: u32) -> bool {
            self.before_grace == Some(price) || self.within_grace.contains(&price)
        }
    }

    fn price_query(product_id: &str) -> QueryItem {
        QueryItem::new()
            .types(["ProductDefined", "ProductPriceChanged"])
            .tags([product_tag(product_id)])
    }

    struct Products;

    impl Example for Products {
        type Event = ProductEvent;
        type Command = ProductCommand;
        type Rule = PriceRule;

        fn query(command: &ProductCommand) -> Query {
            match command {
                ProductCommand::OrderProduct { product_id, .. } => {
                    Query::items([price_query(product_id)])
                }
                ProductCommand::OrderProducts { items } => {
                    Query::items(items.iter().map(|(product_id, _)| price_query(product_id)))
                }
            }
        }

        fn decide(
            history: &[Seen<ProductEvent>],
            command: &ProductCommand,
            now_nanos: u64,
        ) -> Result<Vec<ProductEvent>, PriceRule> {
            let check = |product_id: &str, displayed: u32| {
                if ValidPrices::of(history, product_id, now_nanos).accepts(displayed) {
                    Ok(())
                } else {
                    Err(PriceRule::InvalidPrice(product_id.into()))
                }
            };
            match command {
                ProductCommand::OrderProduct {
                    product_id,
                    displayed_price,
                } => {
                    check(product_id, *displayed_price)?;
                    Ok(vec![ordered(product_id, *displayed_price)])
                }
                ProductCommand::OrderProducts { items } => {
                    for (product_id, displayed_price) in items {
                        check(product_id, *displayed_price)?;
                    }
                    Ok(vec![cart_ordered(items)])
                }
            }
        }
    }

    fn defined(product_id: &str, price: u32) -> ProductEvent {
        ProductEvent::ProductDefined {
            product_id: product_id.into(),
            price,
        }
    }

    fn price_changed(product_id: &str, new_price: u32) -> ProductEvent {
        ProductEvent::ProductPriceChanged {
            product_id: product_id.into(),
            new_price,
        }
    }

    fn ordered(product_id: &str, price: u32) -> ProductEvent {
        ProductEvent::ProductOrdered {
            product_id: product_id.into(),
            price,
        }
    }

    fn cart_ordered<S: AsRef<str>>(items: &[(S, u32)]) -> ProductEvent {
        ProductEvent::ProductsOrdered {
            items: items
                .iter()
                .map(|(product_id, price)| OrderedItem {
                    product_id: product_id.as_ref().into(),
                    price: *price,
                })
                .collect(),
        }
    }

    fn order(product_id: &str, displayed_price: u32) -> ProductCommand {
        ProductCommand::OrderProduct {
            product_id: product_id.into(),
            displayed_price,
        }
    }

    fn order_cart(items: &[(&str, u32)]) -> ProductCommand {
        ProductCommand::OrderProducts {
            items: items
                .iter()
                .map(|(p, price)| ((*p).into(), *price))
                .collect(),
        }
    }

    fn invalid(product_id: &str) -> PriceRule {
        PriceRule::InvalidPrice(product_id.into())
    }

    #[test]
    fn feature_1_order_single_product() {
        check_cases::<Products>(&[
            Case {
                description: "a price other than the product's is refused",
                given: vec![given(defined("p1", 123))],
                when: order("p1", 100),
                then: Then::Error(invalid("p1")),
            },
            Case {
                description: "the product's price holds",
                given: vec![given(defined("p1", 123))],
                when: order("p1", 123),
                then: Then::Event(ordered("p1", 123)),
            },
        ]);
    }

    #[test]
    fn feature_2_changing_product_prices() {
        check_cases::<Products>(&[
            Case {
                description: "a price other than the product's is refused",
                given: vec![given(defined("p1", 123))],
                when: order("p1", 100),
                then: Then::Error(invalid("p1")),
            },
            Case {
                description: "the product's price holds",
                given: vec![given(defined("p1", 123))],
                when: order("p1", 123),
                then: Then::Event(ordered("p1", 123)),
            },
            Case {
                description: "a price the product never had is refused",
                given: vec![aged(defined("p1", 123), 20 * MINUTE)],
                when: order("p1", 100),
                then: Then::Error(invalid("p1")),
            },
            Case {
                description: "the price replaced before the grace period is refused",
                given: vec![
                    aged(defined("p1", 123), 20 * MINUTE),
                    aged(price_changed("p1", 134), 20 * MINUTE),
                ],
                when: order("p1", 123),
                then: Then::Error(invalid("p1")),
            },
            Case {
                description: "the price in force since long ago holds",
                given: vec![aged(defined("p1", 123), 20 * MINUTE)],
                when: order("p1", 123),
                then: Then::Event(ordered("p1", 123)),
            },
            Case {
                description: "the price replaced within the grace period still holds",
                given: vec![
                    aged(defined("p1", 123), 20 * MINUTE),
                    aged(price_changed("p1", 134), 9 * MINUTE),
                ],
                when: order("p1", 123),
                then: Then::Event(ordered("p1", 123)),
            },
            Case {
                description: "the price set within the grace period holds",
                given: vec![
                    aged(defined("p1", 123), 20 * MINUTE),
                    aged(price_changed("p1", 134), 9 * MINUTE),
                ],
                when: order("p1", 134),
                then: Then::Event(ordered("p1", 134)),
            },
        ]);
    }

    #[test]
    fn feature_3_multiple_products() {
        check_cases::<Products>(&[
            Case {
                description: "a price the product never had is refused",
                given: vec![aged(defined("p1", 123), 20 * MINUTE)],
                when: order_cart(&[("p1", 100)]),
                then: Then::Error(invalid("p1")),
            },
            Case {
                description: "the price replaced before the grace period is refused",
                given: vec![
                    aged(defined("p1", 123), 20 * MINUTE),
                    aged(price_changed("p1", 134), 20 * MINUTE),
                ],
                when: order_cart(&[("p1", 123)]),
                then: Then::Error(invalid("p1")),
            },
            Case {
                description: "the price in force since long ago holds",
                given: vec![aged(defined("p1", 123), 20 * MINUTE)],
                when: order_cart(&[("p1", 123)]),
                then: Then::Event(cart_ordered(&[("p1", 123)])),
            },
            Case {
                description: "the price replaced within the grace period still holds",
                given: vec![
                    aged(defined("p1", 123), 20 * MINUTE),
                    aged(price_changed("p1", 134), 9 * MINUTE),
                ],
                when: order_cart(&[("p1", 123)]),
                then: Then::Event(cart_ordered(&[("p1", 123)])),
            },
            Case {
                description: "a cart whose prices all hold is ordered",
                given: vec![
                    aged(defined("p1", 123), 20 * MINUTE),
                    aged(price_changed("p1", 134), 9 * MINUTE),
                    aged(defined("p2", 321), 8 * MINUTE),
                ],
                when: order_cart(&[("p1", 123), ("p2", 321)]),
                then: Then::Event(cart_ordered(&[("p1", 123), ("p2", 321)])),
            },
        ]);
    }

    #[test]
    fn a_price_change_after_the_decision_refuses_the_order() {
        let (_dir, store) = open_store(Durability::Sync);
        let now = wall_clock_nanos();
        store
            .append(
                "product-p1",
                ExpectedVersion::Any,
                &[event_data(&defined("p1", 123))],
            )
            .unwrap();
        store
            .append(
                "product-p2",
                ExpectedVersion::Any,
                &[event_data(&defined("p2", 321))],
            )
            .unwrap();
        let decision =
            decide_from_store::<Products>(&store, &order_cart(&[("p1", 123), ("p2", 321)]), now)
                .unwrap();
        // Orders do not change prices: another order does not get in the way.
        handle::<Products>(&store, &order("p1", 123), now).unwrap();
        let change = store
            .append(
                "product-p2",
                ExpectedVersion::Any,
                &[event_data(&price_changed("p2", 300))],
            )
            .unwrap();
        let refused = commit_decision(&store, &decision);
        assert!(
            matches!(refused, Err(Error::AppendConditionFailed { position }) if position == change.first_position),
            "{refused:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Event-sourced aggregate
// ---------------------------------------------------------------------------

mod event_sourced_aggregate {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum CourseEvent {
        CourseDefined {
            course_id: String,
            title: String,
            capacity: u32,
        },
        CourseCapacityChanged {
            course_id: String,
            new_capacity: u32,
        },
        StudentSubscribedToCourse {
            course_id: String,
            student_id: String,
        },
    }

    impl CourseEvent {
        fn course_id(&self) -> &str {
            match self {
                CourseEvent::CourseDefined { course_id, .. }
                | CourseEvent::CourseCapacityChanged { course_id, .. }
                | CourseEvent::StudentSubscribedToCourse { course_id, .. } => course_id,
            }
        }
    }

    fn course_tag(course_id: &str) -> String {
        format!("course:{course_id}")
    }

    impl ExampleEvent for CourseEvent {
        fn event_type(&self) -> &'static str {
            match self {
                CourseEvent::CourseDefined { .. } => "CourseDefined",
                CourseEvent::CourseCapacityChanged { .. } => "CourseCapacityChanged",
                CourseEvent::StudentSubscribedToCourse { .. } => "StudentSubscribedToCourse",
            }
        }

        // The aggregate is the consistency boundary: its events carry its
        // tag and nothing else.
        fn tags(&self) -> Vec<String> {
            vec![course_tag(self.course_id())]
        }

        fn stream(&self) -> String {
            format!("course-{}", self.course_id())
        }
    }

    #[derive(Debug, PartialEq)]
    enum CourseRule {
        CapacityUnchanged {
            course_id: String,
            capacity: u32,
        },
        CapacityBelowSubscriptions {
            course_id: String,
            subscriptions: u32,
        },
        FullyBooked(String),
    }

    #[derive(Debug, Default)]
    struct CourseAggregate {
        recorded: Vec<CourseEvent>,
        /// The head of the read it was loaded from (`None`: a new course).
        version: Option<u64>,
        id: String,
        capacity: u32,
        subscriptions: u32,
    }

    impl CourseAggregate {
        fn create(id: &str, title: &str, capacity: u32) -> Self {
            let mut course = CourseAggregate::default();
            course.record(CourseEvent::CourseDefined {
                course_id: id.into(),
                title: title.into(),
                capacity,
            });
            course
        }

        fn reconstitute(
            events: impl IntoIterator<Item = CourseEvent>,
            version: Option<u64>,
        ) -> Self {
            let mut course = CourseAggregate::default();
            for event in events {
                course.apply(&event);
            }
            course.version = version;
            course
        }

        fn id(&self) -> &str {
            &self.id
        }

        fn change_capacity(&mut self, new_capacity: u32) -> Result<(), CourseRule> {
            if new_capacity == self.capacity {
                return Err(CourseRule::CapacityUnchanged {
                    course_id: self.id.clone(),
                    capacity: new_capacity,
                });
            }
            if new_capacity < self.subscriptions {
                return Err(CourseRule::CapacityBelowSubscriptions {
                    course_id: self.id.clone(),
                    subscriptions: self.subscriptions,
                });
            }
            self.record(CourseEvent::CourseCapacityChanged {
                course_id: self.id.clone(),
                new_capacity,
            });
            Ok(())
        }

        fn subscribe_student(&mut self, student_id: &str) -> Result<(), CourseRule> {
            if self.subscriptions >= self.capacity {
                return Err(CourseRule::FullyBooked(self.id.clone()));
            }
            self.record(CourseEvent::StudentSubscribedToCourse {
                course_id: self.id.clone(),
                student_id: student_id.into(),
            });
            Ok(())
        }

        fn record(&mut self, event: CourseEvent) {
            self.apply(&event);
            self.recorded.push(event);
        }

        fn apply(&mut self, event: &CourseEvent) {
            match event {
                CourseEvent::CourseDefined {
                    course_id,
                    capacity,
                    ..
                } => {
                    self.id.clone_from(course_id);
                    self.capacity = *capacity;
                }
                CourseEvent::CourseCapacityChanged { new_capacity, .. } => {
                    self.capacity = *new_capacity;
                }
                CourseEvent::StudentSubscribedToCourse { .. } => self.subscriptions += 1,
            }
        }

        fn pull_recorded_events(&mut self) -> Vec<CourseEvent> {
            std::mem::take(&mut self.recorded)
        }
    }

    /// Loads courses by their tag and saves them on the condition that no
    /// event of the course was appended since they were loaded.
    struct CourseRepository<'a> {
        store: &'a Store,
    }

    impl CourseRepository<'_> {
        fn query(course_id: &str) -> Query {
            Query::tagged([course_tag(course_id)])
        }

        fn load(&self, course_id: &str) -> Result<CourseAggregate, Error> {
            let read = self
                .store
                .read_query_after(&Self::query(course_id), None, usize::MAX)?;
            let events = read.events.iter().map(|e| seen::<CourseEvent>(e).event);
            Ok(CourseAggregate::reconstitute(events, read.head))
        }

        /// Saves what `course` recorded; `None` if it recorded nothing.
        fn save(&self, course: &mut CourseAggregate) -> Result<Option<CommitResult>, Error> {
            let events = course.pull_recorded_events();
            if events.is_empty() {
                return Ok(None);
            }
            let commit = Commit::new()
                .append(
                    format!("course-{}", course.id()),
                    ExpectedVersion::Any,
                    events.iter().map(event_data),
                )
                .condition(AppendCondition::new(
                    Self::query(course.id()),
                    course.version,
                ));
            let result = self.store.commit(&commit)?;
            course.version = Some(result.last_position);
            Ok(Some(result))
        }
    }

    fn types(events: &[CourseEvent]) -> Vec<&'static str> {
        events.iter().map(ExampleEvent::event_type).collect()
    }

    #[test]
    fn a_new_course_records_its_definition_and_capacity_change() {
        let mut course = CourseAggregate::create("c1", "Course 01", 10);
        course.change_capacity(15).unwrap();
        let events = course.pull_recorded_events();
        assert_eq!(types(&events), ["CourseDefined", "CourseCapacityChanged"]);
        assert!(course.pull_recorded_events().is_empty());
    }

    #[test]
    fn a_reconstituted_course_refuses_the_capacity_it_has() {
        let (_dir, store) = open_store(Durability::Sync);
        for event in [
            CourseEvent::CourseDefined {
                course_id: "c1".into(),
                title: "Course 01".into(),
                capacity: 10,
            },
            CourseEvent::CourseCapacityChanged {
                course_id: "c1".into(),
                new_capacity: 15,
            },
        ] {
            store
                .append(&event.stream(), ExpectedVersion::Any, &[event_data(&event)])
                .unwrap();
        }
        let mut course = CourseRepository { store: &store }.load("c1").unwrap();
        assert_eq!(course.version, Some(1));
        assert_eq!(
            course.change_capacity(15),
            Err(CourseRule::CapacityUnchanged {
                course_id: "c1".into(),
                capacity: 15
            })
        );
    }

    #[test]
    fn the_repository_saves_and_loads_a_course() {
        let (_dir, store) = open_store(Durability::Sync);
        let repository = CourseRepository { store: &store };
        let mut course = CourseAggregate::create("c1", "Course 01", 10);
        repository.save(&mut course).unwrap().unwrap();

        let mut course = repository.load("c1").unwrap();
        course.change_capacity(15).unwrap();
        repository.save(&mut course).unwrap().unwrap();
        assert!(repository.save(&mut course).unwrap().is_none());

        let read = store
            .read_query(&Query::tagged(["course:c1"]), 0, Direction::Forward, 1)
            .unwrap();
        let first = &read.events[0];
        assert_recorded(
            &CourseEvent::CourseDefined {
                course_id: "c1".into(),
                title: "Course 01".into(),
                capacity: 10,
            },
            first,
            "the first event of course c1",
        );
        assert_eq!(first.position, 0);
        let loaded = repository.load("c1").unwrap();
        assert_eq!((loaded.id(), loaded.capacity), ("c1", 15));
    }

    #[test]
    fn a_course_saved_from_a_stale_load_is_refused() {
        let (_dir, store) = open_store(Durability::Sync);
        let repository = CourseRepository { store: &store };
        repository
            .save(&mut CourseAggregate::create("c1", "Course 01", 10))
            .unwrap();
        let mut first = repository.load("c1").unwrap();
        let mut second = repository.load("c1").unwrap();
        // Another course changing in between is no conflict.
        repository
            .save(&mut CourseAggregate::create("c2", "Course 02", 5))
            .unwrap();
        first.change_capacity(16).unwrap();
        let saved = repository.save(&mut first).unwrap().unwrap();
        second.change_capacity(17).unwrap();
        let refused = repository.save(&mut second);
        assert!(
            matches!(refused, Err(Error::AppendConditionFailed { position }) if position == saved.first_position),
            "{refused:?}"
        );
        assert_eq!(repository.load("c1").unwrap().capacity, 16);
        // Creating a course that exists is a stale save too.
        let duplicate = repository.save(&mut CourseAggregate::create("c1", "Again", 3));
        assert!(
            matches!(duplicate, Err(Error::AppendConditionFailed { position: 0 })),
            "{duplicate:?}"
        );
    }

    #[test]
    fn a_course_keeps_its_capacity_rules() {
        let (_dir, store) = open_store(Durability::Sync);
        let repository = CourseRepository { store: &store };
        let mut course = CourseAggregate::create("c1", "Course 01", 2);
        course.subscribe_student("s1").unwrap();
        course.subscribe_student("s2").unwrap();
        assert_eq!(
            course.subscribe_student("s3"),
            Err(CourseRule::FullyBooked("c1".into()))
        );
        repository.save(&mut course).unwrap().unwrap();
        let mut course = repository.load("c1").unwrap();
        assert_eq!(
            course.change_capacity(1),
            Err(CourseRule::CapacityBelowSubscriptions {
                course_id: "c1".into(),
                subscriptions: 2
            })
        );
        course.change_capacity(3).unwrap();
        course.subscribe_student("s3").unwrap();
        repository.save(&mut course).unwrap().unwrap();
        let events: Vec<CourseEvent> = store
            .read_stream("course-c1", 0, Direction::Forward, 10)
            .unwrap()
            .iter()
            .map(|e| seen::<CourseEvent>(e).event)
            .collect();
        assert_eq!(
            types(&events),
            [
                "CourseDefined",
                "StudentSubscribedToCourse",
                "StudentSubscribedToCourse",
                "CourseCapacityChanged",
                "StudentSubscribedToCourse"
            ]
        );
    }
}
