//! The group-commit barrier: callers queue commands, one of them leads. The
//! first caller to find no leader takes every queued command as a group,
//! has it written and synced once, and answers each. If commands were
//! queued meanwhile, it hands them to a dedicated leader, which takes group
//! after group until the queue is empty, so no caller is kept from
//! returning by other callers' work. A lone caller leads its own group, so
//! it never waits on another thread.
//!
//! The barrier knows nothing of what a command does: it only queues,
//! groups, bounds the queue's bytes and elects leaders. That is what lets
//! it be tested alone.

use crate::telemetry::{AtomicDistribution, Distribution};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Commands a group has room for before it grows (see [`Barrier::take_group`]).
const GROUP_CAPACITY: usize = 64;

/// A command waiting at the barrier.
pub trait Queued {
    /// Bytes the command adds to the queue and to a group.
    fn bytes(&self) -> usize;
    /// Whether a leader lingering for a fuller group must stop waiting once
    /// this command is queued (someone is waiting on purpose for what is
    /// already there, as a flush is).
    fn ends_linger(&self) -> bool {
        false
    }
}

/// How big queues and groups may grow.
#[derive(Debug, Clone, Copy)]
#[expect(
    clippy::struct_field_names,
    reason = "the fields keep the names of the options they come from"
)]
pub struct Limits {
    /// Callers wait to queue while this many bytes are queued (a single
    /// larger command still goes alone).
    pub max_queue_bytes: usize,
    /// A group takes at most this many bytes (but at least one command).
    pub max_batch_bytes: usize,
    /// How long a leader waits for a group to fill, if at all.
    pub max_linger: Option<Duration>,
}

/// What a caller that queued a command must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Nobody was leading: the caller leads now.
    Lead,
    /// A leader will take the command; the caller waits for its answer.
    Follow,
}

/// Who leads a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leader {
    /// A caller, elected by [`Barrier::submit`]: it leads one group.
    Caller,
    /// The dedicated leader: it leads until the queue is empty.
    Dedicated,
}

/// What the leader does after a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Take another group.
    Continue,
    /// Stop leading: the queue is empty.
    Stop,
    /// Stop leading and wake the dedicated leader, which leads from now
    /// on: commands are queued.
    HandOver,
}

/// The barrier refused a command: it is closed. The command comes back.
#[derive(Debug)]
pub struct Closed<C>(pub C);

/// Why [`Barrier::try_submit`] did not queue a command, which comes back.
#[cfg(feature = "async")]
#[derive(Debug)]
pub enum Refused<C> {
    /// The queue is full: the waker given is woken once there is room.
    Full(C),
    /// The barrier is closed.
    Closed(C),
}

struct Queue<C> {
    commands: VecDeque<C>,
    bytes: usize,
    closed: bool,
    /// A caller or the dedicated leader is leading, or the dedicated one
    /// has been handed the queue. Whenever commands are queued this is
    /// set: someone will take them.
    leader_active: bool,
    /// Callers waiting for room.
    waiting: usize,
    /// Async callers to wake once there is room.
    room_wakers: Vec<std::task::Waker>,
}

/// The barrier. See the module documentation.
pub struct Barrier<C> {
    limits: Limits,
    queue: Mutex<Queue<C>>,
    changed: Condvar,
    not_full: Condvar,
    /// How long callers waited for room, one value per wait.
    back_pressure: AtomicDistribution,
}

impl<C: Queued> Barrier<C> {
    /// An open, empty barrier.
    pub fn new(limits: Limits) -> Self {
        Barrier {
            limits,
            queue: Mutex::new(Queue {
                commands: VecDeque::new(),
                bytes: 0,
                closed: false,
                leader_active: false,
                waiting: 0,
                room_wakers: Vec::new(),
            }),
            changed: Condvar::new(),
            not_full: Condvar::new(),
            back_pressure: AtomicDistribution::default(),
        }
    }

    /// Queues `command`, first waiting while the queue is full.
    pub fn submit(&self, command: C) -> Result<Role, Closed<C>> {
        let bytes = command.bytes();
        let mut queue = self.queue.lock();
        // Set on the first wait only: a caller that finds room pays nothing.
        let mut waiting_since = None;
        loop {
            if queue.closed {
                if waiting_since.is_some() {
                    queue.waiting -= 1;
                }
                return Err(Closed(command));
            }
            if queue.bytes == 0 || queue.bytes.saturating_add(bytes) <= self.limits.max_queue_bytes
            {
                break;
            }
            if waiting_since.is_none() {
                waiting_since = Some(Instant::now());
                queue.waiting += 1;
            }
            self.not_full.wait(&mut queue);
        }
        if let Some(since) = waiting_since {
            queue.waiting -= 1;
            self.back_pressure.record_duration(since.elapsed());
        }
        Ok(self.enqueue(&mut queue, command, bytes))
    }

    /// Queues `command` if there is room, without ever waiting: for async
    /// callers. When the queue is full, `waker` is woken once a group is
    /// taken, and the command comes back.
    #[cfg(feature = "async")]
    pub fn try_submit(&self, command: C, waker: &std::task::Waker) -> Result<Role, Refused<C>> {
        let bytes = command.bytes();
        let mut queue = self.queue.lock();
        if queue.closed {
            return Err(Refused::Closed(command));
        }
        if queue.bytes != 0 && queue.bytes.saturating_add(bytes) > self.limits.max_queue_bytes {
            // Registered under the lock that taking a group frees room
            // under: no wake-up is missed.
            if !queue.room_wakers.iter().any(|w| w.will_wake(waker)) {
                queue.room_wakers.push(waker.clone());
            }
            return Err(Refused::Full(command));
        }
        Ok(self.enqueue(&mut queue, command, bytes))
    }

    /// Puts `command` (of `bytes`) at the end of `queue`, which has room,
    /// and says who leads it.
    fn enqueue(&self, queue: &mut Queue<C>, command: C, bytes: usize) -> Role {
        queue.bytes = queue.bytes.saturating_add(bytes);
        queue.commands.push_back(command);
        self.changed.notify_all();
        if queue.leader_active {
            return Role::Follow;
        }
        queue.leader_active = true;
        Role::Lead
    }

    /// Records that an async caller waited `waited` for room.
    #[cfg(feature = "async")]
    pub fn record_wait(&self, waited: std::time::Duration) {
        self.back_pressure.record_duration(waited);
    }

    /// The commands and bytes queued now, and the callers waiting for
    /// room.
    pub fn depth(&self) -> (usize, usize, usize) {
        let queue = self.queue.lock();
        (queue.commands.len(), queue.bytes, queue.waiting)
    }

    /// How long callers waited for room in the queue.
    pub fn back_pressure(&self) -> Distribution {
        self.back_pressure.snapshot()
    }

    /// Takes the next group (for the leader): up to `max_batch_bytes` of
    /// queued commands, at least one if any is queued, after lingering for
    /// more if the limits ask for it.
    pub fn take_group(&self) -> Vec<C> {
        let limits = &self.limits;
        let mut queue = self.queue.lock();
        if let Some(linger) = limits.max_linger {
            // A linger too long to have a deadline waits for a full group.
            let deadline = Instant::now().checked_add(linger);
            while queue.bytes < limits.max_batch_bytes
                && !queue.closed
                && !queue.commands.iter().any(Queued::ends_linger)
            {
                match deadline {
                    Some(deadline) => {
                        if self.changed.wait_until(&mut queue, deadline).timed_out() {
                            break;
                        }
                    }
                    None => self.changed.wait(&mut queue),
                }
            }
        }
        // Room for a typical group up front rather than growing push by
        // push; a long queue may be cut short by the byte limit.
        let mut group = Vec::with_capacity(queue.commands.len().min(GROUP_CAPACITY));
        let mut taken = 0usize;
        while let Some(command) = queue.commands.front() {
            let bytes = command.bytes();
            if !group.is_empty() && taken.saturating_add(bytes) > limits.max_batch_bytes {
                break;
            }
            taken = taken.saturating_add(bytes);
            if let Some(command) = queue.commands.pop_front() {
                group.push(command);
            }
        }
        queue.bytes = queue.bytes.saturating_sub(taken);
        let room_wakers = std::mem::take(&mut queue.room_wakers);
        drop(queue);
        self.not_full.notify_all();
        for waker in room_wakers {
            waker.wake();
        }
        group
    }

    /// Called by the leader after each group: stops if the queue is empty,
    /// else the dedicated leader goes on and a caller hands over to it (the
    /// barrier stays led meanwhile).
    pub fn after_group(&self, leader: Leader) -> Next {
        let mut queue = self.queue.lock();
        if queue.commands.is_empty() {
            queue.leader_active = false;
            self.changed.notify_all();
            return Next::Stop;
        }
        match leader {
            Leader::Caller => Next::HandOver,
            Leader::Dedicated => Next::Continue,
        }
    }

    /// Puts commands back at the head of the queue, in order, for the next
    /// group.
    pub fn requeue(&self, commands: Vec<C>) {
        if commands.is_empty() {
            return;
        }
        let mut queue = self.queue.lock();
        for command in commands.into_iter().rev() {
            queue.bytes = queue.bytes.saturating_add(command.bytes());
            queue.commands.push_front(command);
        }
    }

    /// Whether no command is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.lock().commands.is_empty()
    }

    /// Refuses new commands, then waits until every queued one was taken
    /// and no leader is left. Idempotent.
    pub fn close(&self) {
        let mut queue = self.queue.lock();
        queue.closed = true;
        self.not_full.notify_all();
        // Futures waiting for room learn that the store closed.
        for waker in queue.room_wakers.drain(..) {
            waker.wake();
        }
        while queue.leader_active || !queue.commands.is_empty() {
            self.changed.wait(&mut queue);
        }
    }

    /// After the leader failed for good (it panicked): closes the barrier,
    /// clears the leader and returns every queued command, so the caller
    /// can answer them instead of leaving them waiting.
    pub fn abandon(&self) -> Vec<C> {
        let mut queue = self.queue.lock();
        queue.closed = true;
        queue.leader_active = false;
        queue.bytes = 0;
        let commands = queue.commands.drain(..).collect();
        let room_wakers = std::mem::take(&mut queue.room_wakers);
        drop(queue);
        self.changed.notify_all();
        self.not_full.notify_all();
        for waker in room_wakers {
            waker.wake();
        }
        commands
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
    use std::sync::Arc;

    /// A command that stands for `bytes` bytes and reports back through a
    /// channel the group it was in.
    struct Cmd {
        id: usize,
        bytes: usize,
        reply: SyncSender<usize>,
    }

    impl Queued for Cmd {
        fn bytes(&self) -> usize {
            self.bytes
        }
    }

    fn limits(max_batch_bytes: usize) -> Limits {
        Limits {
            max_queue_bytes: 1 << 20,
            max_batch_bytes,
            max_linger: None,
        }
    }

    /// What a caller does: queue, lead when elected, wait for its group.
    /// The dedicated leader is a thread of its own, woken on hand-over.
    fn call(
        barrier: &Arc<Barrier<Cmd>>,
        log: &Arc<Mutex<Vec<Vec<usize>>>>,
        id: usize,
        bytes: usize,
    ) -> usize {
        let (reply, answer): (_, Receiver<usize>) = sync_channel(1);
        let role = barrier.submit(Cmd { id, bytes, reply }).ok().unwrap();
        if role == Role::Lead && lead(barrier, log, Leader::Caller) == Next::HandOver {
            let (barrier, log) = (Arc::clone(barrier), Arc::clone(log));
            std::thread::spawn(move || lead(&barrier, &log, Leader::Dedicated));
        }
        answer.recv().unwrap()
    }

    fn lead(barrier: &Barrier<Cmd>, log: &Mutex<Vec<Vec<usize>>>, leader: Leader) -> Next {
        loop {
            let group = barrier.take_group();
            let mut log = log.lock();
            let number = log.len();
            log.push(group.iter().map(|c| c.id).collect());
            for c in &group {
                c.reply.send(number).unwrap();
            }
            drop(log);
            match barrier.after_group(leader) {
                Next::Continue => {}
                other => return other,
            }
        }
    }

    #[test]
    fn a_lone_caller_leads_its_own_group() {
        let barrier = Arc::new(Barrier::new(limits(100)));
        let log = Arc::new(Mutex::new(Vec::new()));
        assert_eq!(call(&barrier, &log, 7, 10), 0);
        assert_eq!(*log.lock(), vec![vec![7]]);
        assert!(barrier.is_empty());
    }

    #[test]
    fn every_command_is_taken_once_in_groups_within_the_byte_limit() {
        let barrier = Arc::new(Barrier::new(limits(50)));
        let log = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (barrier, log) = (Arc::clone(&barrier), Arc::clone(&log));
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let id = t * 1000 + i;
                        let group = call(&barrier, &log, id, 10);
                        assert!(log.lock()[group].contains(&id));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let log = log.lock();
        let mut seen: Vec<usize> = log.iter().flatten().copied().collect();
        seen.sort_unstable();
        let expected: Vec<usize> = (0..8)
            .flat_map(|t| (0..200).map(move |i| t * 1000 + i))
            .collect();
        assert_eq!(seen, expected);
        for group in log.iter() {
            assert!(!group.is_empty() && group.len() <= 5, "{group:?}");
        }
        // Each thread's commands are in its own order.
        for t in 0..8 {
            let own: Vec<usize> = log
                .iter()
                .flatten()
                .copied()
                .filter(|id| id / 1000 == t)
                .collect();
            assert!(own.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn a_command_larger_than_a_group_goes_alone() {
        let barrier = Barrier::new(limits(10));
        let (reply, _answer) = sync_channel(4);
        let big = Cmd {
            id: 1,
            bytes: 100,
            reply: reply.clone(),
        };
        let small = Cmd {
            id: 2,
            bytes: 1,
            reply,
        };
        assert_eq!(barrier.submit(big).ok(), Some(Role::Lead));
        assert_eq!(barrier.submit(small).ok(), Some(Role::Follow));
        let first: Vec<usize> = barrier.take_group().iter().map(|c| c.id).collect();
        assert_eq!(first, vec![1]);
        assert_eq!(barrier.after_group(Leader::Dedicated), Next::Continue);
        let second: Vec<usize> = barrier.take_group().iter().map(|c| c.id).collect();
        assert_eq!(second, vec![2]);
        assert_eq!(barrier.after_group(Leader::Dedicated), Next::Stop);
    }

    #[test]
    fn a_caller_hands_a_queue_over_and_the_dedicated_leader_empties_it() {
        let barrier = Barrier::new(limits(1));
        let (reply, _answer) = sync_channel(8);
        let cmd = |id| Cmd {
            id,
            bytes: 1,
            reply: reply.clone(),
        };
        assert_eq!(barrier.submit(cmd(0)).ok(), Some(Role::Lead));
        assert_eq!(barrier.submit(cmd(1)).ok(), Some(Role::Follow));
        assert_eq!(barrier.take_group().len(), 1);
        // Commands are queued: the caller hands over, and the barrier stays
        // led, so a new caller follows instead of leading.
        assert_eq!(barrier.after_group(Leader::Caller), Next::HandOver);
        assert_eq!(barrier.submit(cmd(2)).ok(), Some(Role::Follow));
        assert_eq!(barrier.take_group().len(), 1);
        assert_eq!(barrier.after_group(Leader::Dedicated), Next::Continue);
        assert_eq!(barrier.take_group().len(), 1);
        assert_eq!(barrier.after_group(Leader::Dedicated), Next::Stop);
        // Nobody leads now: the next caller does.
        assert_eq!(barrier.submit(cmd(3)).ok(), Some(Role::Lead));
        assert_eq!(barrier.take_group().len(), 1);
        assert_eq!(barrier.after_group(Leader::Caller), Next::Stop);
    }

    #[test]
    fn requeued_commands_come_first_and_in_order() {
        let barrier = Barrier::new(limits(100));
        let (reply, _answer) = sync_channel(8);
        for id in 0..3 {
            let _ = barrier.submit(Cmd {
                id,
                bytes: 1,
                reply: reply.clone(),
            });
        }
        let mut group = barrier.take_group();
        let _ = barrier.submit(Cmd {
            id: 9,
            bytes: 1,
            reply,
        });
        group.truncate(2);
        barrier.requeue(group);
        let ids: Vec<usize> = barrier.take_group().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![0, 1, 9]);
    }

    #[test]
    fn a_closed_barrier_refuses_and_an_abandoned_one_returns_its_queue() {
        let barrier = Barrier::new(limits(100));
        let (reply, _answer) = sync_channel(8);
        for id in 0..3 {
            let _ = barrier.submit(Cmd {
                id,
                bytes: 1,
                reply: reply.clone(),
            });
        }
        let left: Vec<usize> = barrier.abandon().iter().map(|c| c.id).collect();
        assert_eq!(left, vec![0, 1, 2]);
        let refused = barrier.submit(Cmd {
            id: 5,
            bytes: 1,
            reply,
        });
        assert!(matches!(refused, Err(Closed(Cmd { id: 5, .. }))));
        // Nothing queued and no leader: close returns at once.
        barrier.close();
    }

    /// A command that stops a linger, as a flush does.
    struct Urgent;

    impl Queued for Urgent {
        fn bytes(&self) -> usize {
            0
        }
        fn ends_linger(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_command_that_ends_lingering_is_taken_at_once() {
        let barrier = Barrier::new(Limits {
            max_queue_bytes: 100,
            max_batch_bytes: 100,
            max_linger: Some(Duration::MAX),
        });
        assert_eq!(barrier.submit(Urgent).ok(), Some(Role::Lead));
        assert_eq!(barrier.take_group().len(), 1);
    }

    #[test]
    fn an_endless_linger_waits_for_a_full_group_instead_of_panicking() {
        let barrier = Barrier::new(Limits {
            max_queue_bytes: 100,
            max_batch_bytes: 2,
            max_linger: Some(Duration::MAX),
        });
        let (reply, _answer) = sync_channel(8);
        for id in 0..2 {
            let _ = barrier.submit(Cmd {
                id,
                bytes: 1,
                reply: reply.clone(),
            });
        }
        assert_eq!(barrier.take_group().len(), 2);
    }
}
