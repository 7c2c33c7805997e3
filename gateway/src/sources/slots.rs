//! Slots for wide requests' source calls, given earliest deadline first.
//!
//! A FIFO semaphore serves calls in the order they queue, so every wide
//! request in flight shares the slots turn by turn: a region statistic
//! (108 calls) then waits its turn 108 times behind pages that need two
//! or three, and under 16 region clients on one CPU it ran past the 5 s
//! request deadline (partial) while the pages finished in a fraction of
//! it. Handing a free slot to the call whose request must answer first
//! (its deadline: its arrival + `request_deadline_ms`) finishes requests
//! in the order they came, without holding a slot for a request that has
//! no call ready: the same throughput, and no request starved past its
//! deadline by later ones.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

/// Slots shared by all wide requests (`server.max_wide_source_calls`).
#[derive(Debug)]
pub struct WideSlots {
    state: Mutex<State>,
    size: usize,
}

#[derive(Debug)]
struct State {
    free: usize,
    waiting: BinaryHeap<Waiter>,
    /// Arrival order among equal deadlines.
    next: u64,
}

#[derive(Debug)]
struct Waiter {
    by: Instant,
    seq: u64,
    hand: oneshot::Sender<Slot>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.by, self.seq) == (other.by, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// The earliest deadline is the greatest (`BinaryHeap` pops the
    /// greatest); then the first to queue.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.by, other.seq).cmp(&(self.by, self.seq))
    }
}

/// A slot held; dropping it hands it to the next waiter.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<WideSlots>,
    /// False for a slot that was never taken (a hand-over that failed).
    held: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.held {
            self.slots.release();
        }
    }
}

impl WideSlots {
    pub fn new(size: usize) -> Arc<WideSlots> {
        Arc::new(WideSlots {
            state: Mutex::new(State {
                free: size.max(1),
                waiting: BinaryHeap::new(),
                next: 0,
            }),
            size: size.max(1),
        })
    }

    /// How many slots there are.
    pub fn size(&self) -> usize {
        self.size
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a call of a request that must answer `by` (its arrival,
    /// for a request without a deadline). Cancel-safe: a waiter that goes
    /// away loses its place, and a slot handed to it as it went comes back.
    pub async fn acquire(self: &Arc<Self>, by: Instant) -> Slot {
        let waiting = {
            let mut state = self.lock();
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Slot {
                    slots: self.clone(),
                    held: true,
                };
            }
            let (hand, waiting) = oneshot::channel();
            let seq = state.next;
            state.next += 1;
            state.waiting.push(Waiter { by, seq, hand });
            waiting
        };
        match waiting.await {
            Ok(slot) => slot,
            // The sender is only dropped after a hand-over; never reached,
            // but a slot taken anew is never wrong.
            Err(_) => Box::pin(self.acquire(by)).await,
        }
    }

    /// Hand a freed slot to the waiter with the earliest deadline, or keep
    /// it free.
    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        while let Some(waiter) = state.waiting.pop() {
            let slot = Slot {
                slots: self.clone(),
                held: true,
            };
            match waiter.hand.send(slot) {
                Ok(()) => return,
                // That waiter went away: the slot was never taken.
                Err(mut slot) => slot.held = false,
            }
        }
        state.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_earliest_deadline_not_the_first_to_queue() {
        let slots = WideSlots::new(1);
        let held = slots.acquire(Instant::now()).await;
        let now = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Queued late-deadline first.
        for (name, by) in [("late", 3000), ("early", 1000), ("middle", 2000)] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire(now + Duration::from_millis(by)).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["early", "middle", "late"]);
        assert_eq!(slots.lock().free, 1, "every slot came back");
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_loses_no_slot() {
        let slots = WideSlots::new(2);
        let a = slots.acquire(Instant::now()).await;
        let b = slots.acquire(Instant::now()).await;
        // Two waiters give up; one stays.
        for _ in 0..2 {
            let _ = tokio::time::timeout(Duration::from_millis(10), slots.acquire(Instant::now()))
                .await;
        }
        let stays = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(Instant::now()).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(a);
        let c = stays.await.unwrap();
        drop((b, c));
        assert_eq!(slots.lock().free, 2);
        assert!(slots.lock().waiting.is_empty());
    }
}
