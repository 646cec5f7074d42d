//! Turns at a shared resource, handed out round-robin over namespaces: a worker's bulk jobs
//! take one to talk to the object store, so a namespace whose jobs fill the worker's
//! prefetch waits its turn like any other, and another namespace's next job is served
//! after at most one job of each namespace waiting, not after all of the first's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

pub struct FairTurns {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Turns in all, and the fewer that bulk jobs keep while an interactive job runs.
    turns: usize,
    yielding: usize,
    /// Turns handed out and not given back yet.
    held: usize,
    /// Interactive jobs running.
    interactive: usize,
    /// Waiters by namespace, oldest first.
    waiting: BTreeMap<String, VecDeque<oneshot::Sender<()>>>,
    /// Namespaces with waiters, in the order their next turn comes.
    order: VecDeque<String>,
}

impl State {
    fn limit(&self) -> usize {
        if self.interactive > 0 {
            self.yielding
        } else {
            self.turns
        }
    }
}

/// A turn, given back when dropped.
pub struct Turn<'a> {
    turns: &'a FairTurns,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.give_back();
    }
}

/// An interactive job running: while any is, bulk jobs take no more than the yielding
/// number of turns, so its own requests to the store queue behind few.
pub struct Yielding<'a> {
    turns: &'a FairTurns,
}

impl Drop for Yielding<'_> {
    fn drop(&mut self) {
        let mut state = self.turns.lock();
        state.interactive -= 1;
        FairTurns::hand_out(&mut state);
    }
}

/// A wait for a turn; a turn handed to a wait that is dropped before it saw it is given
/// back.
struct Waiting<'a> {
    turns: &'a FairTurns,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            if rx.try_recv().is_ok() {
                self.turns.give_back();
            }
        }
    }
}

impl FairTurns {
    /// `turns` at once; `yielding` of them while an interactive job runs.
    pub fn new(turns: usize, yielding: usize) -> FairTurns {
        FairTurns {
            state: Mutex::new(State {
                turns,
                yielding: yielding.min(turns),
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a turn for a job of `namespace`.
    pub async fn take(&self, namespace: &str) -> Turn<'_> {
        loop {
            let rx = {
                let mut state = self.lock();
                if state.held < state.limit() && state.order.is_empty() {
                    state.held += 1;
                    return Turn { turns: self };
                }
                let (tx, rx) = oneshot::channel();
                let queue = state.waiting.entry(namespace.to_owned()).or_default();
                queue.push_back(tx);
                if queue.len() == 1 {
                    state.order.push_back(namespace.to_owned());
                }
                rx
            };
            let mut waiting = Waiting {
                turns: self,
                rx: Some(rx),
            };
            let handed = waiting.rx.as_mut().expect("set above").await;
            waiting.rx = None;
            // A sender is only dropped once its turn was handed over, so this holds.
            if handed.is_ok() {
                return Turn { turns: self };
            }
        }
    }

    /// Marks an interactive job running until the guard is dropped.
    pub fn interactive(&self) -> Yielding<'_> {
        self.lock().interactive += 1;
        Yielding { turns: self }
    }

    fn give_back(&self) {
        let mut state = self.lock();
        state.held -= 1;
        FairTurns::hand_out(&mut state);
    }

    /// Hands the turns under the limit to the next namespaces in line.
    fn hand_out(state: &mut State) {
        while state.held < state.limit() {
            let Some(namespace) = state.order.pop_front() else {
                return;
            };
            let Some(queue) = state.waiting.get_mut(&namespace) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&namespace);
            } else {
                state.order.push_back(namespace);
            }
            if let Some(tx) = next {
                if tx.send(()).is_ok() {
                    state.held += 1;
                }
            }
        }
    }

    /// Turns free now (for tests and metrics).
    pub fn free(&self) -> usize {
        let state = self.lock();
        state.limit().saturating_sub(state.held)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn turns_go_round_robin_over_namespaces() {
        let turns = Arc::new(FairTurns::new(1, 1));
        let held = turns.take("a").await;
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        // Namespace a queues five jobs, then b one: b's goes second, not sixth.
        for (i, ns) in ["a", "a", "a", "a", "a", "b"].into_iter().enumerate() {
            let (turns, served) = (turns.clone(), served.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = turns.take(ns).await;
                served.lock().unwrap().push(format!("{ns}{i}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(
            *served.lock().unwrap(),
            ["a0", "b5", "a1", "a2", "a3", "a4"]
        );
        assert_eq!(turns.free(), 1, "every turn came back");
    }

    #[tokio::test]
    async fn a_wait_given_up_loses_no_turn() {
        let turns = FairTurns::new(2, 2);
        let first = turns.take("a").await;
        let second = turns.take("a").await;
        assert_eq!(turns.free(), 0);
        // A wait that is abandoned, before and after its turn was handed over.
        let abandoned = tokio::time::timeout(Duration::from_millis(20), turns.take("b")).await;
        assert!(abandoned.is_err());
        drop(first);
        assert_eq!(turns.free(), 1, "the abandoned wait's turn stays free");
        let third = turns.take("c").await;
        drop(second);
        drop(third);
        assert_eq!(turns.free(), 2);
    }

    #[tokio::test]
    async fn bulk_yields_turns_while_an_interactive_job_runs() {
        let turns = Arc::new(FairTurns::new(4, 1));
        let held = [turns.take("a").await, turns.take("a").await];
        let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let yielding = turns.interactive();
        assert_eq!(turns.free(), 0, "two held, one allowed");
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let (turns, waiting) = (turns.clone(), waiting.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = turns.take("b").await;
                waiting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }));
        }
        drop(held);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            waiting.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "only one turn while the interactive job runs"
        );
        drop(yielding);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(waiting.load(std::sync::atomic::Ordering::SeqCst), 3);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(turns.free(), 4, "every turn came back");
    }
}
