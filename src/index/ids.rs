//! The idempotency window: the ids of the most recently written events and
//! their positions, so that a retried append can be recognised.

use std::collections::{HashMap, VecDeque};

/// Ids of the last `capacity` written events.
#[derive(Debug, Default)]
pub struct IdWindow {
    capacity: usize,
    // Ids are random or caller-chosen, never attacker-chosen against our
    // hash seed, and are hashed for every event written: a fast hasher.
    positions: HashMap<u128, u64, foldhash::fast::RandomState>,
    order: VecDeque<(u128, u64)>,
}

impl IdWindow {
    /// A window remembering up to `capacity` events (0: none).
    pub fn new(capacity: usize) -> Self {
        IdWindow {
            capacity,
            positions: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Where the event with this id was written, if it is in the window.
    pub fn get(&self, id: u128) -> Option<u64> {
        self.positions.get(&id).copied()
    }

    /// Remembers that the event `id` was written at `position`, forgetting
    /// the oldest beyond the capacity.
    pub fn push(&mut self, id: u128, position: u64) {
        if self.capacity == 0 {
            return;
        }
        self.positions.insert(id, position);
        self.order.push_back((id, position));
        while self.order.len() > self.capacity {
            if let Some((old, at)) = self.order.pop_front() {
                // The same id may have been written again later (after it
                // left a smaller window); keep the newer one.
                if self.positions.get(&old) == Some(&at) {
                    self.positions.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_its_capacity() {
        let mut window = IdWindow::new(3);
        for (id, position) in [(10, 0), (11, 1), (12, 2), (13, 3)] {
            window.push(id, position);
        }
        assert_eq!(window.get(10), None);
        assert_eq!(window.get(11), Some(1));
        assert_eq!(window.get(13), Some(3));
        let mut none = IdWindow::new(0);
        none.push(1, 1);
        assert_eq!(none.get(1), None);
    }
}
