//! Turns at the solver: at most one solve per core, the smallest waiting problem next, and a
//! bounded queue.
//!
//! A solve holds a [`Turn`]; dropping it hands the turn to the waiting request with the smallest
//! problem (fewest stops, then the earliest), so a 2-stop request waits for at most one running
//! solve to end, however many 2,000-stop requests queued before it. At most `max_queued` requests
//! wait; one more is refused at once ([`Full`]) instead of timing out in the queue — unless it is
//! smaller than the largest waiting problem, which then gives up its place (its request is refused
//! at once instead), so big problems filling the queue never lock small ones out. A waiter that
//! gave up (its request timed out) is skipped when its turn comes.
//!
//! Big problems can wait behind a stream of small ones; their request deadline bounds that wait
//! (503), as it bounds every wait here.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The queue is full: refuse at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{waiting} optimize requests already wait for the solver (optimize.max_queued_solves)")]
pub struct Full {
    pub waiting: usize,
}

/// The solver's turns. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Solvers {
    state: Mutex<State>,
    max_queued: usize,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Smallest cost first, then arrival order.
    waiting: BinaryHeap<Reverse<Waiter>>,
    next_seq: u64,
}

#[derive(Debug)]
struct Waiter {
    cost: usize,
    seq: u64,
    tx: oneshot::Sender<Turn>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.cost, self.seq) == (other.cost, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.cost, self.seq).cmp(&(other.cost, other.seq))
    }
}

impl State {
    /// Drop the largest waiting problem if it is larger than `cost`; its request sees the queue
    /// closed under it and is refused at once.
    fn evict_larger_than(&mut self, cost: usize) -> bool {
        let largest = self.waiting.iter().max_by_key(|w| (w.0.cost, w.0.seq));
        let Some(largest) = largest.filter(|w| w.0.cost > cost).map(|w| w.0.seq) else {
            return false;
        };
        self.waiting.retain(|w| w.0.seq != largest);
        true
    }
}

/// The right to run one solve; dropping it passes the turn on.
#[derive(Debug)]
pub struct Turn {
    solvers: Option<Arc<Solvers>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(solvers) = self.solvers.take() {
            Solvers::release(&solvers);
        }
    }
}

/// A place in the queue: resolves to a [`Turn`].
pub type Waiting = oneshot::Receiver<Turn>;

impl Solvers {
    pub fn new(turns: usize, max_queued: usize) -> Arc<Solvers> {
        Arc::new(Solvers {
            state: Mutex::new(State {
                free: turns,
                waiting: BinaryHeap::new(),
                next_seq: 0,
            }),
            max_queued,
        })
    }

    /// A turn now, a place in the queue for a problem of `cost` (its stop count), or [`Full`].
    pub fn enter(self: &Arc<Self>, cost: usize) -> Result<Result<Turn, Waiting>, Full> {
        let mut state = self.lock();
        if state.free > 0 {
            state.free -= 1;
            return Ok(Ok(self.turn()));
        }
        state.waiting.retain(|w| !w.0.tx.is_closed());
        if state.waiting.len() >= self.max_queued && !state.evict_larger_than(cost) {
            return Err(Full {
                waiting: state.waiting.len(),
            });
        }
        let (tx, rx) = oneshot::channel();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.waiting.push(Reverse(Waiter { cost, seq, tx }));
        Ok(Err(rx))
    }

    /// Requests waiting for a turn.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    fn turn(self: &Arc<Self>) -> Turn {
        Turn {
            solvers: Some(self.clone()),
        }
    }

    fn release(this: &Arc<Self>) {
        let mut state = this.lock();
        while let Some(Reverse(next)) = state.waiting.pop() {
            match next.tx.send(this.turn()) {
                Ok(()) => return,
                // The request gave up waiting: disarm the turn it did not take, try the next.
                Err(mut unused) => drop(unused.solvers.take()),
            }
        }
        state.free += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(s: &Arc<Solvers>, cost: usize) -> Waiting {
        s.enter(cost).unwrap().expect_err("queued")
    }

    #[test]
    fn the_smallest_waiting_problem_goes_next_and_the_queue_is_bounded() {
        let s = Solvers::new(1, 3);
        let running = s.enter(2000).unwrap().unwrap();
        let mut big1 = queued(&s, 2000);
        let mut big2 = queued(&s, 2000);
        let mut small = queued(&s, 2);
        assert_eq!(s.enter(3000).err(), Some(Full { waiting: 3 }));
        drop(running);
        let small_turn = small.try_recv().expect("the small problem goes first");
        assert!(big1.try_recv().is_err() && big2.try_recv().is_err());
        drop(small_turn);
        let first = big1.try_recv().expect("then the bigs, in arrival order");
        assert!(big2.try_recv().is_err());
        drop(first);
        drop(big2.try_recv().expect("the last"));
        assert!(s.enter(5).unwrap().is_ok(), "the turn came back");
    }

    #[test]
    fn a_small_problem_takes_the_place_of_the_largest_when_the_queue_is_full() {
        let s = Solvers::new(1, 2);
        let running = s.enter(2000).unwrap().unwrap();
        let mut big = queued(&s, 2000);
        let mut bigger = queued(&s, 3000);
        let mut small = queued(&s, 2);
        assert!(matches!(
            bigger.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
        assert_eq!(s.enter(2500).err(), Some(Full { waiting: 2 }));
        drop(running);
        let _turn = small.try_recv().expect("the small one goes next");
        assert!(big.try_recv().is_err());
    }

    #[test]
    fn a_waiter_that_gave_up_is_skipped_and_frees_its_place() {
        let s = Solvers::new(1, 2);
        let running = s.enter(10).unwrap().unwrap();
        let gone = queued(&s, 1);
        let mut kept = queued(&s, 10);
        drop(gone);
        let _third = queued(&s, 10); // the place of the one that gave up
        drop(running);
        let _turn = kept
            .try_recv()
            .expect("the one still waiting gets the turn");
        assert_eq!(s.waiting(), 1);
    }
}
