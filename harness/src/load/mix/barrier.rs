//! A barrier that clients can leave: a client whose run is over no longer holds the others
//! at the next checkpoint.

use std::sync::Mutex;

use tokio::sync::watch;

#[derive(Debug)]
struct State {
    parties: usize,
    arrived: usize,
    generation: u64,
}

/// Releases everyone waiting once every party still taking part has arrived.
#[derive(Debug)]
pub struct Barrier {
    state: Mutex<State>,
    released: watch::Sender<u64>,
}

impl Barrier {
    /// A barrier for `parties` clients.
    pub fn new(parties: usize) -> Barrier {
        Barrier {
            state: Mutex::new(State {
                parties,
                arrived: 0,
                generation: 0,
            }),
            released: watch::Sender::new(0),
        }
    }

    fn release(&self, state: &mut State) {
        state.arrived = 0;
        state.generation += 1;
        self.released.send_replace(state.generation);
    }

    /// Waits until every party still taking part has arrived.
    pub async fn wait(&self) {
        let (mut released, generation) = {
            let mut state = self.state.lock().expect("barrier lock");
            state.arrived += 1;
            if state.arrived >= state.parties {
                self.release(&mut state);
                return;
            }
            (self.released.subscribe(), state.generation)
        };
        // The sender lives as long as the barrier, so this only ends by a release.
        let _ = released.wait_for(|&g| g > generation).await;
    }

    /// Stops taking part; releases the others if they were waiting only for this one.
    pub fn leave(&self) {
        let mut state = self.state.lock().expect("barrier lock");
        state.parties = state.parties.saturating_sub(1);
        if state.parties > 0 && state.arrived >= state.parties {
            self.release(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn releases_when_all_arrive_or_the_rest_leave() {
        let barrier = Arc::new(Barrier::new(3));
        let passed = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (barrier, passed) = (barrier.clone(), passed.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                passed.fetch_add(1, Ordering::SeqCst);
                barrier.wait().await;
                passed.fetch_add(1, Ordering::SeqCst);
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(passed.load(Ordering::SeqCst), 0, "two of three arrived");
        barrier.wait().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(passed.load(Ordering::SeqCst), 2);
        // The third leaves instead of arriving again: the other two go on.
        barrier.leave();
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("released")
                .unwrap();
        }
        assert_eq!(passed.load(Ordering::SeqCst), 4);
    }
}
