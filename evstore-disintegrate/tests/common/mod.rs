//! A small course-enrolment domain shared by the tests.
#![allow(dead_code)]

use disintegrate::serde::json::Json;
use disintegrate::{Decision, StateMutate, StateQuery};
use evstore::{Options, Store};
use evstore_disintegrate::EvstoreEventStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, disintegrate::Event)]
#[stream(CourseEvent, [CourseCreated, CourseClosed, StudentEnrolled])]
#[stream(StudentEvent, [StudentRegistered, StudentEnrolled])]
#[stream(BoardEvent, [CourseCreated, Announcement])]
pub enum DomainEvent {
    CourseCreated {
        #[id]
        course_id: String,
        seats: u32,
    },
    CourseClosed {
        #[id]
        course_id: String,
    },
    StudentRegistered {
        #[id]
        student_id: String,
    },
    StudentEnrolled {
        #[id]
        student_id: String,
        #[id]
        course_id: String,
    },
    /// Declares no identifier: a filter on `course_id` does not narrow it.
    Announcement { text: String },
}

pub type Events = EvstoreEventStore<DomainEvent, Json<DomainEvent>>;

pub fn open(dir: &std::path::Path) -> (Store, Events) {
    let store = Store::open(dir, Options::default()).unwrap();
    let events = EvstoreEventStore::new(store.clone(), Json::<DomainEvent>::default());
    (store, events)
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, StateQuery)]
#[state_query(CourseEvent)]
pub struct Course {
    #[id]
    pub course_id: String,
    pub created: bool,
    pub closed: bool,
    pub seats_left: u32,
}

impl Course {
    pub fn new(course_id: &str) -> Self {
        Course {
            course_id: course_id.to_string(),
            ..Course::default()
        }
    }
}

impl StateMutate for Course {
    fn mutate(&mut self, event: Self::Event) {
        match event {
            CourseEvent::CourseCreated { seats, .. } => {
                self.created = true;
                self.seats_left = seats;
            }
            CourseEvent::CourseClosed { .. } => self.closed = true,
            CourseEvent::StudentEnrolled { .. } => {
                self.seats_left = self.seats_left.saturating_sub(1)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, StateQuery)]
#[state_query(StudentEvent)]
pub struct Student {
    #[id]
    pub student_id: String,
    pub registered: bool,
    pub courses: Vec<String>,
}

impl Student {
    pub fn new(student_id: &str) -> Self {
        Student {
            student_id: student_id.to_string(),
            ..Student::default()
        }
    }
}

impl StateMutate for Student {
    fn mutate(&mut self, event: Self::Event) {
        match event {
            StudentEvent::StudentRegistered { .. } => self.registered = true,
            StudentEvent::StudentEnrolled { course_id, .. } => self.courses.push(course_id),
        }
    }
}

/// A course's notice board: its creation and every announcement.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, StateQuery)]
#[state_query(BoardEvent)]
pub struct Board {
    #[id]
    pub course_id: String,
    pub created: bool,
    pub announcements: u32,
}

impl StateMutate for Board {
    fn mutate(&mut self, event: Self::Event) {
        match event {
            BoardEvent::CourseCreated { .. } => self.created = true,
            BoardEvent::Announcement { .. } => self.announcements += 1,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("the course exists")]
    CourseExists,
    #[error("no such course")]
    NoCourse,
    #[error("the course is full")]
    Full,
    #[error("the student is not registered")]
    NotRegistered,
    #[error("already enrolled")]
    AlreadyEnrolled,
}

pub struct CreateCourse(pub &'static str, pub u32);

impl Decision for CreateCourse {
    type Event = DomainEvent;
    type StateQuery = Course;
    type Error = Refused;

    fn state_query(&self) -> Course {
        Course::new(self.0)
    }

    fn process(&self, course: &Course) -> Result<Vec<DomainEvent>, Refused> {
        if course.created {
            return Err(Refused::CourseExists);
        }
        Ok(vec![DomainEvent::CourseCreated {
            course_id: self.0.to_string(),
            seats: self.1,
        }])
    }
}

pub struct Register(pub String);

impl Decision for Register {
    type Event = DomainEvent;
    type StateQuery = Student;
    type Error = Refused;

    fn state_query(&self) -> Student {
        Student::new(&self.0)
    }

    fn process(&self, _: &Student) -> Result<Vec<DomainEvent>, Refused> {
        Ok(vec![DomainEvent::StudentRegistered {
            student_id: self.0.clone(),
        }])
    }
}

pub struct Enroll {
    pub student: String,
    pub course: String,
}

impl Decision for Enroll {
    type Event = DomainEvent;
    type StateQuery = (Course, Student);
    type Error = Refused;

    fn state_query(&self) -> (Course, Student) {
        (Course::new(&self.course), Student::new(&self.student))
    }

    fn process(&self, (course, student): &(Course, Student)) -> Result<Vec<DomainEvent>, Refused> {
        if !course.created || course.closed {
            return Err(Refused::NoCourse);
        }
        if !student.registered {
            return Err(Refused::NotRegistered);
        }
        if student.courses.contains(&self.course) {
            return Err(Refused::AlreadyEnrolled);
        }
        if course.seats_left == 0 {
            return Err(Refused::Full);
        }
        Ok(vec![DomainEvent::StudentEnrolled {
            student_id: self.student.clone(),
            course_id: self.course.clone(),
        }])
    }
}
