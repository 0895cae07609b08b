//! Course enrolment on evstore through disintegrate: courses with a number
//! of seats, students who may take at most two courses, and a read model
//! of the seats left, fed from the log by a listener.
//!
//! Hundreds of concurrent enrolments race for the seats. Each decision
//! reads the course and the student (two states, one query), and appends
//! only if nothing it read has changed since: no course ends up with more
//! students than seats, and no student with more than two courses.
//!
//! ```text
//! cargo run --release -p evstore-disintegrate --example courses [DIR]
//! ```

use disintegrate::serde::json::Json;
use disintegrate::{
    Decision, DecisionError, EventListener, PersistedEvent, StateMutate, StateQuery, StreamQuery,
};
use evstore::{Options, Store};
use evstore_disintegrate::{
    decision_maker, Error, EvstoreEventStore, EvstoreSnapshotter, ListenerRunner,
    WithEvstoreSnapshot,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COURSES: usize = 10;
const SEATS: u32 = 40;
const STUDENTS: usize = 300;
const ATTEMPTS: usize = 2_000;
const MAX_COURSES_PER_STUDENT: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, disintegrate::Event)]
#[stream(SeatEvent, [CourseOpened, Enrolled, Withdrew])]
#[stream(StudentEvent, [StudentRegistered, Enrolled, Withdrew])]
enum Campus {
    CourseOpened {
        #[id]
        course_id: String,
        seats: u32,
    },
    StudentRegistered {
        #[id]
        student_id: String,
    },
    Enrolled {
        #[id]
        course_id: String,
        #[id]
        student_id: String,
    },
    Withdrew {
        #[id]
        course_id: String,
        #[id]
        student_id: String,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, StateQuery)]
#[state_query(SeatEvent)]
struct Seats {
    #[id]
    course_id: String,
    opened: bool,
    left: u32,
}

impl StateMutate for Seats {
    fn mutate(&mut self, event: SeatEvent) {
        match event {
            SeatEvent::CourseOpened { seats, .. } => {
                self.opened = true;
                self.left = seats;
            }
            SeatEvent::Enrolled { .. } => self.left = self.left.saturating_sub(1),
            SeatEvent::Withdrew { .. } => self.left += 1,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, StateQuery)]
#[state_query(StudentEvent)]
struct Timetable {
    #[id]
    student_id: String,
    registered: bool,
    courses: Vec<String>,
}

impl StateMutate for Timetable {
    fn mutate(&mut self, event: StudentEvent) {
        match event {
            StudentEvent::StudentRegistered { .. } => self.registered = true,
            StudentEvent::Enrolled { course_id, .. } => self.courses.push(course_id),
            StudentEvent::Withdrew { course_id, .. } => self.courses.retain(|c| *c != course_id),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("no such course")]
    NoCourse,
    #[error("not registered")]
    NotRegistered,
    #[error("course full")]
    Full,
    #[error("already enrolled")]
    AlreadyEnrolled,
    #[error("too many courses")]
    TooMany,
    #[error("not enrolled")]
    NotEnrolled,
}

struct OpenCourse(String);

impl Decision for OpenCourse {
    type Event = Campus;
    type StateQuery = Seats;
    type Error = Refusal;

    fn state_query(&self) -> Seats {
        Seats {
            course_id: self.0.clone(),
            ..Seats::default()
        }
    }

    fn process(&self, seats: &Seats) -> Result<Vec<Campus>, Refusal> {
        if seats.opened {
            return Ok(Vec::new());
        }
        Ok(vec![Campus::CourseOpened {
            course_id: self.0.clone(),
            seats: SEATS,
        }])
    }
}

struct Register(String);

impl Decision for Register {
    type Event = Campus;
    type StateQuery = Timetable;
    type Error = Refusal;

    fn state_query(&self) -> Timetable {
        Timetable {
            student_id: self.0.clone(),
            ..Timetable::default()
        }
    }

    fn process(&self, timetable: &Timetable) -> Result<Vec<Campus>, Refusal> {
        if timetable.registered {
            return Ok(Vec::new());
        }
        Ok(vec![Campus::StudentRegistered {
            student_id: self.0.clone(),
        }])
    }
}

struct Enroll {
    course_id: String,
    student_id: String,
}

impl Decision for Enroll {
    type Event = Campus;
    type StateQuery = (Seats, Timetable);
    type Error = Refusal;

    fn state_query(&self) -> (Seats, Timetable) {
        (
            Seats {
                course_id: self.course_id.clone(),
                ..Seats::default()
            },
            Timetable {
                student_id: self.student_id.clone(),
                ..Timetable::default()
            },
        )
    }

    fn process(&self, (seats, timetable): &(Seats, Timetable)) -> Result<Vec<Campus>, Refusal> {
        if !seats.opened {
            return Err(Refusal::NoCourse);
        }
        if !timetable.registered {
            return Err(Refusal::NotRegistered);
        }
        if timetable.courses.contains(&self.course_id) {
            return Err(Refusal::AlreadyEnrolled);
        }
        if timetable.courses.len() >= MAX_COURSES_PER_STUDENT {
            return Err(Refusal::TooMany);
        }
        if seats.left == 0 {
            return Err(Refusal::Full);
        }
        Ok(vec![Campus::Enrolled {
            course_id: self.course_id.clone(),
            student_id: self.student_id.clone(),
        }])
    }
}

struct Withdraw {
    course_id: String,
    student_id: String,
}

impl Decision for Withdraw {
    type Event = Campus;
    type StateQuery = Timetable;
    type Error = Refusal;

    fn state_query(&self) -> Timetable {
        Timetable {
            student_id: self.student_id.clone(),
            ..Timetable::default()
        }
    }

    fn process(&self, timetable: &Timetable) -> Result<Vec<Campus>, Refusal> {
        if !timetable.courses.contains(&self.course_id) {
            return Err(Refusal::NotEnrolled);
        }
        Ok(vec![Campus::Withdrew {
            course_id: self.course_id.clone(),
            student_id: self.student_id.clone(),
        }])
    }
}

/// The read model: seats left per course, kept by a listener.
struct SeatBoard {
    query: StreamQuery<u64, Campus>,
    left: Arc<Mutex<HashMap<String, i64>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the seat board is poisoned")]
struct BoardPoisoned;

#[async_trait::async_trait]
impl EventListener<u64, Campus> for SeatBoard {
    type Error = BoardPoisoned;

    fn id(&self) -> &'static str {
        "seat-board"
    }

    fn query(&self) -> &StreamQuery<u64, Campus> {
        &self.query
    }

    async fn handle(&self, event: PersistedEvent<u64, Campus>) -> Result<(), BoardPoisoned> {
        let mut left = self.left.lock().map_err(|_| BoardPoisoned)?;
        match event.into_inner() {
            Campus::CourseOpened { course_id, seats } => {
                left.insert(course_id, i64::from(seats));
            }
            Campus::Enrolled { course_id, .. } => *left.entry(course_id).or_default() -= 1,
            Campus::Withdrew { course_id, .. } => *left.entry(course_id).or_default() += 1,
            Campus::StudentRegistered { .. } => {}
        }
        Ok(())
    }
}

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outcome {
    Enrolled,
    Withdrew,
    Refused,
    Failed,
}

/// Spreads attempt `i` over the courses and students (a fixed mix, so
/// every run makes the same attempts).
fn scatter(i: usize) -> usize {
    let mixed = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    usize::try_from(mixed >> 40).unwrap_or(usize::MAX)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let scratch = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| scratch.path().to_path_buf(), Into::into);
    let store = Store::open(&dir, Options::default())?;
    let events = EvstoreEventStore::new(store.clone(), Json::<Campus>::default());
    let snapshots = EvstoreSnapshotter::new(store.clone(), 20);
    let decide = Arc::new(decision_maker(
        events.clone(),
        WithEvstoreSnapshot::new(snapshots),
    ));

    let left = Arc::new(Mutex::new(HashMap::new()));
    let board = SeatBoard {
        query: disintegrate::query!(Campus),
        left: Arc::clone(&left),
    };
    let listener = ListenerRunner::new(&events, board).start()?;

    for c in 0..COURSES {
        decide.make(OpenCourse(format!("course-{c}"))).await?;
    }
    for s in 0..STUDENTS {
        decide.make(Register(format!("student-{s}"))).await?;
    }

    // Every attempt is its own task; a conflict is retried, as an
    // application would, until the decision is taken or refused. One in
    // ten attempts withdraws from a course instead, freeing a seat.
    let started = Instant::now();
    let attempts: Vec<_> = (0..ATTEMPTS)
        .map(|i| {
            let decide = Arc::clone(&decide);
            let pick = scatter(i);
            let course_id = format!("course-{}", pick % COURSES);
            let student_id = format!("student-{}", (pick / COURSES) % STUDENTS);
            tokio::spawn(async move {
                let mut conflicts = 0;
                loop {
                    let made = if i % 10 == 9 {
                        let withdraw = Withdraw {
                            course_id: course_id.clone(),
                            student_id: student_id.clone(),
                        };
                        decide.make(withdraw).await.map(|_| Outcome::Withdrew)
                    } else {
                        let enroll = Enroll {
                            course_id: course_id.clone(),
                            student_id: student_id.clone(),
                        };
                        decide.make(enroll).await.map(|_| Outcome::Enrolled)
                    };
                    match made {
                        Ok(outcome) => return (outcome, conflicts),
                        Err(DecisionError::Domain(_)) => return (Outcome::Refused, conflicts),
                        Err(DecisionError::StateStore(error))
                            if matches!(error.downcast_ref(), Some(Error::Concurrency { .. })) =>
                        {
                            conflicts += 1;
                        }
                        Err(_) => return (Outcome::Failed, conflicts),
                    }
                }
            })
        })
        .collect();
    let mut outcomes: HashMap<Outcome, usize> = HashMap::new();
    let mut conflicts = 0;
    for attempt in attempts {
        let (outcome, retried) = attempt.await?;
        *outcomes.entry(outcome).or_default() += 1;
        conflicts += retried;
    }
    let elapsed = started.elapsed();

    let count = |outcome| outcomes.get(&outcome).copied().unwrap_or(0);
    let (enrolled, withdrew) = (count(Outcome::Enrolled), count(Outcome::Withdrew));
    let capacity = COURSES * SEATS as usize;
    println!(
        "{ATTEMPTS} decisions in {:.2} s: {enrolled} enrolled, {withdrew} withdrew, {} refused, {conflicts} conflicts retried",
        elapsed.as_secs_f64(),
        count(Outcome::Refused),
    );
    if count(Outcome::Failed) > 0 {
        return Err("a decision failed for a reason other than a conflict".into());
    }
    let taken = enrolled - withdrew;
    if taken > capacity.min(STUDENTS * MAX_COURSES_PER_STUDENT) {
        return Err(format!("{taken} seats taken of {capacity}").into());
    }

    // The read model catches up with the log.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let board_total: i64 = left.lock().map_err(|_| "poisoned")?.values().sum();
        let expected = i64::try_from(capacity)? - i64::try_from(taken)?;
        if board_total == expected {
            println!(
                "read model: {board_total} seats left over {COURSES} courses, as the log says"
            );
            break;
        }
        if Instant::now() > deadline {
            return Err(
                format!("read model shows {board_total} seats left, log says {expected}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let handled = listener.stop()?;
    println!(
        "listener stopped after event {handled}; events in the log: {}",
        events.head()
    );
    Ok(())
}
