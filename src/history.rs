//! What was done: the most recent jobs, newest first, for `/v1/history`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::notify::Notification;

/// How many jobs are kept.
const KEEP: usize = 500;

/// One finished job.
#[derive(Clone, Debug, Serialize)]
pub struct JobRecord {
    pub id: u64,
    #[serde(flatten)]
    pub notification: Notification,
}

/// Shared, append-only list of recent jobs. A std mutex is right here: it is
/// held only to push or copy, never across an `.await`.
#[derive(Clone, Default)]
pub struct History {
    records: Arc<Mutex<VecDeque<JobRecord>>>,
}

impl History {
    pub fn record(&self, record: JobRecord) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() == KEEP {
            records.pop_back();
        }
        records.push_front(record);
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<JobRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
