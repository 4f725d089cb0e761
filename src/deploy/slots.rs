//! Slots for engine operations (`HOIST_MAX_PARALLEL`).
//!
//! A slot is held for one engine operation (a pull, create, stop, start,
//! rename or remove), never while a health gate is waited for: waiting is
//! not work, and holding slots through it made a fan-out to 50 containers
//! take longer than a sequential script.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shared by every job; cheap to clone.
#[derive(Clone, Debug)]
pub struct Slots(Arc<Semaphore>);

impl Slots {
    pub fn new(count: usize) -> Slots {
        Slots(Arc::new(Semaphore::new(count.max(1))))
    }

    /// Runs one engine operation in a slot.
    pub async fn run<F: Future>(&self, operation: F) -> F::Output {
        let _slot = self.take().await;
        operation.await
    }

    /// A slot held until the permit is dropped.
    pub async fn take(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed, so acquiring cannot fail.
        match self.0.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the slots' semaphore is never closed"),
        }
    }
}

impl Default for Slots {
    fn default() -> Slots {
        Slots::new(4)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn no_more_operations_than_slots_run_at_once() {
        let slots = Slots::new(2);
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let operations = (0..6).map(|_| {
            let (slots, now, most) = (slots.clone(), now.clone(), most.clone());
            async move {
                slots
                    .run(async {
                        let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(running, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }
        });
        futures_util::future::join_all(operations).await;
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
