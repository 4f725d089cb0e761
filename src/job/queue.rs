//! The bounded queue of accepted jobs.
//!
//! `HOIST_QUEUE_CAPACITY` counts jobs that were acknowledged and have not
//! started to run: from the moment intake reserves room for them until the
//! runner lets them start (or drops them as superseded or without a target).
//! The channels between intake, the tee and the runner only carry jobs; the
//! bound is this count, so a full queue answers 503 (the sender retries) and
//! the runner never holds an unbounded pile of waiting tasks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::Job;
use crate::telemetry;

/// Why room could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Capacity reached: answer 503 with `Retry-After`.
    Full,
    /// The runner is gone (shutdown).
    Closed,
}

/// The count of jobs accepted and not yet running.
#[derive(Debug)]
pub struct Waiting {
    count: AtomicUsize,
    capacity: usize,
}

impl Waiting {
    fn try_take(&self, n: usize) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count + n <= self.capacity).then_some(count + n)
            })
            .inspect(|count| telemetry::queue_depth(count + n))
            .is_ok()
    }

    /// Counted whatever the capacity: jobs re-queued at start-up were accepted long ago.
    fn take_anyway(&self, n: usize) {
        let count = self.count.fetch_add(n, Ordering::AcqRel) + n;
        telemetry::queue_depth(count);
    }

    fn release(&self, n: usize) {
        let before = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                Some(count.saturating_sub(n))
            })
            .unwrap_or(0);
        telemetry::queue_depth(before.saturating_sub(n));
    }

    /// Jobs accepted and not yet running.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The sending side, used by every intake route. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JobQueue {
    tx: mpsc::Sender<Job>,
    waiting: Arc<Waiting>,
}

/// The receiving side: the jobs, and the count the runner releases as jobs start.
pub struct JobReceiver {
    pub jobs: mpsc::Receiver<Job>,
    pub waiting: Arc<Waiting>,
}

/// A queue of `capacity` waiting jobs. The channel has room for every one of
/// them, so a send after a successful reservation never waits.
pub fn channel(capacity: usize) -> (JobQueue, JobReceiver) {
    let capacity = capacity.max(1);
    let (tx, jobs) = mpsc::channel(capacity);
    let waiting = Arc::new(Waiting {
        count: AtomicUsize::new(0),
        capacity,
    });
    (
        JobQueue {
            tx,
            waiting: waiting.clone(),
        },
        JobReceiver { jobs, waiting },
    )
}

impl JobQueue {
    /// Room for `n` jobs, or none: a request is acknowledged whole or refused whole.
    pub fn try_reserve_many(&self, n: usize) -> Result<Vec<Reservation<'_>>, QueueError> {
        if self.tx.is_closed() {
            return Err(QueueError::Closed);
        }
        if !self.waiting.try_take(n) {
            return Err(QueueError::Full);
        }
        // Each reservation gives its slot back when dropped unsent (a duplicate delivery).
        let slots: Vec<Slot> = (0..n)
            .map(|_| Slot {
                waiting: self.waiting.clone(),
                held: true,
            })
            .collect();
        let permits = match self.tx.try_reserve_many(n) {
            Ok(permits) => permits,
            Err(mpsc::error::TrySendError::Full(())) => return Err(QueueError::Full),
            Err(mpsc::error::TrySendError::Closed(())) => return Err(QueueError::Closed),
        };
        Ok(permits
            .zip(slots)
            .map(|(permit, slot)| Reservation { permit, slot })
            .collect())
    }

    /// Queues a job accepted earlier (re-run at start-up), waiting for room in
    /// the channel but never refusing it: it was acknowledged long ago.
    pub async fn requeue(&self, job: Job) -> Result<(), QueueError> {
        self.waiting.take_anyway(1);
        let slot = Slot {
            waiting: self.waiting.clone(),
            held: true,
        };
        self.tx.send(job).await.map_err(|_| QueueError::Closed)?;
        slot.keep();
        Ok(())
    }

    /// A second entrance with a channel of its own that shares this queue's
    /// count: intake's, in front of the tee that forwards to peers.
    pub fn entrance(&self) -> (JobQueue, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(self.waiting.capacity);
        (
            JobQueue {
                tx,
                waiting: self.waiting.clone(),
            },
            rx,
        )
    }

    /// Passes on a job whose slot was taken at its entrance (the tee).
    pub async fn pass_on(&self, job: Job) -> Result<(), QueueError> {
        self.tx.send(job).await.map_err(|_| QueueError::Closed)
    }

    /// Jobs accepted and not yet running.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// Room for one job.
pub struct Reservation<'a> {
    permit: mpsc::Permit<'a, Job>,
    slot: Slot,
}

impl Reservation<'_> {
    /// Queues the job; its slot stays taken until the runner lets it start.
    pub fn send(self, job: Job) {
        self.slot.keep();
        self.permit.send(job);
    }
}

/// One unit of the waiting count, given back when dropped unless kept.
struct Slot {
    waiting: Arc<Waiting>,
    held: bool,
}

impl Slot {
    /// The job was queued: the runner gives the slot back, not this guard.
    fn keep(mut self) {
        self.held = false;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.held {
            self.waiting.release(1);
        }
    }
}

/// Held by the runner for a job from the channel until the job starts to run
/// (or ends without running): then the job no longer counts as waiting.
pub struct QueuedJob {
    waiting: Arc<Waiting>,
}

impl QueuedJob {
    pub fn new(waiting: Arc<Waiting>) -> QueuedJob {
        QueuedJob { waiting }
    }
}

impl Drop for QueuedJob {
    fn drop(&mut self) {
        self.waiting.release(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Digest, ImageEvent, ImageRef, SourceKind};
    use crate::job::JobId;

    fn job(id: i64) -> Job {
        let event = ImageEvent {
            reference: ImageRef::parse("127.0.0.1:5000/team/app:1").unwrap(),
            digest: Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap(),
            source: SourceKind::Distribution,
            delivery_id: Some(format!("d{id}")),
            actor: None,
            received_at: chrono::Utc::now(),
        };
        Job {
            id: JobId(id),
            event,
            recovered: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_until_a_job_starts() {
        let (queue, mut receiver) = channel(2);
        for (n, reservation) in queue.try_reserve_many(2).unwrap().into_iter().enumerate() {
            reservation.send(job(n as i64));
        }
        assert_eq!(queue.try_reserve_many(1).err(), Some(QueueError::Full));
        // Taken off the channel, but not started: still waiting.
        let first = receiver.jobs.recv().await.unwrap();
        let started = QueuedJob::new(receiver.waiting.clone());
        assert_eq!(queue.try_reserve_many(1).err(), Some(QueueError::Full));
        drop(started);
        assert_eq!(queue.waiting(), 1);
        assert_eq!(first.id, JobId(0));
        assert!(queue.try_reserve_many(1).is_ok());
    }

    #[tokio::test]
    async fn an_unsent_reservation_gives_its_room_back() {
        let (queue, _receiver) = channel(3);
        let reservations = queue.try_reserve_many(3).unwrap();
        assert_eq!(queue.waiting(), 3);
        assert_eq!(queue.try_reserve_many(1).err(), Some(QueueError::Full));
        drop(reservations);
        assert_eq!(queue.waiting(), 0);
        assert_eq!(queue.try_reserve_many(3).unwrap().len(), 3);
    }

    #[tokio::test]
    async fn requeued_jobs_count_but_are_never_refused() {
        let (queue, receiver) = channel(1);
        queue.requeue(job(1)).await.unwrap();
        assert_eq!(queue.waiting(), 1);
        assert_eq!(queue.try_reserve_many(1).err(), Some(QueueError::Full));
        drop(receiver);
        assert_eq!(queue.try_reserve_many(1).err(), Some(QueueError::Closed));
    }
}
