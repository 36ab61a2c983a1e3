//! Exact waits for the simulator's injected latency.
//!
//! `tokio::time::sleep` works on a 1 ms wheel and rounds every deadline up to the next
//! tick, then the runtime parks in `epoll_wait` with millisecond granularity: a 20 ms
//! sleep lasts about 21 ms, which is 5 % of latency the client never caused. Here one
//! process-wide timer thread keeps the pending deadlines in a heap and sleeps with
//! `park_timeout` (a futex wait with nanosecond resolution, tens of microseconds of
//! slack), waking each waiter through a oneshot channel at its deadline. The thread does
//! not spin, so thousands of concurrent waits cost one thread and a heap entry each.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use tokio::sync::oneshot;

/// One pending wait.
struct Entry {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct Timer {
    queue: Arc<Mutex<Queue>>,
    thread: Thread,
}

fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<Timer>> = OnceLock::new();
    TIMER
        .get_or_init(|| {
            let queue = Arc::new(Mutex::new(Queue::default()));
            let q = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name("spm-sim-delay".into())
                .spawn(move || run(&q));
            match spawned {
                Ok(handle) => Some(Timer {
                    queue,
                    thread: handle.thread().clone(),
                }),
                Err(e) => {
                    tracing::warn!("sim delay thread could not start ({e}); using tokio sleep");
                    None
                }
            }
        })
        .as_ref()
}

/// The timer thread: wake every due waiter, then park until the earliest deadline.
/// An early unpark (a new earliest deadline) just runs the loop again.
fn run(queue: &Mutex<Queue>) {
    loop {
        let next = {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            while q.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
                if let Some(Reverse(e)) = q.heap.pop() {
                    // The waiter may be gone (request cancelled); nothing to do then.
                    let _ = e.wake.send(());
                }
            }
            q.heap.peek().map(|Reverse(e)| e.at)
        };
        match next {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

/// Wait until `deadline`, to within tens of microseconds, without holding a runtime
/// worker or spinning. Returns at once when the deadline has passed.
pub async fn until(deadline: Instant) {
    if deadline <= Instant::now() {
        return;
    }
    let Some(t) = timer() else {
        tokio::time::sleep_until(deadline.into()).await;
        return;
    };
    let (tx, rx) = oneshot::channel();
    let earliest = {
        let mut q = t.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.seq += 1;
        let seq = q.seq;
        q.heap.push(Reverse(Entry {
            at: deadline,
            seq,
            wake: tx,
        }));
        q.heap.peek().is_some_and(|Reverse(e)| e.seq == seq)
    };
    if earliest {
        t.thread.unpark();
    }
    // The sender is only dropped after sending, so an error cannot happen while the
    // timer thread lives; fall back to the runtime's timer if it somehow does.
    if rx.await.is_err() {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waits_never_end_before_their_deadline_and_all_wake() {
        let start = Instant::now();
        // Deadlines out of order, some equal, one already past.
        let offsets = [7u64, 1, 4, 4, 0, 9, 2];
        let tasks: Vec<_> = offsets
            .iter()
            .map(|&ms| {
                let at = start + Duration::from_millis(ms);
                tokio::spawn(async move {
                    until(at).await;
                    Instant::now() >= at
                })
            })
            .collect();
        for t in tasks {
            assert!(
                t.await.expect("wait task"),
                "a wait ended before its deadline"
            );
        }
    }
}
