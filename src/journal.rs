//! The job journal: a durable record of every accepted push and every step
//! that changes the engine, in SQLite under `HOIST_STATE_DIR`.
//!
//! - A push is acknowledged (202) only after [`Journal::accept`] has stored it.
//! - Each step of an update is recorded *before* it is taken, so after a
//!   crash [`Journal::unfinished`] tells start-up what may be half done.
//! - A finished job's report is stored with it, which is what `/v1/history`
//!   serves, across restarts.
//!
//! Acknowledged means durable, across a power cut and not only a process
//! kill: SQLite runs in WAL mode with `synchronous=FULL`, so every commit
//! (a push accepted, a step recorded) is fsynced before the call returns,
//! and so before the 202 leaves or the step is taken. (`NORMAL` would leave
//! the last commits in the OS's cache, and a power cut could take them.)
//! Pushes that arrive together share a commit, and so an fsync
//! ([`Journal::accept`]). A push that no target runs is acknowledged without
//! a record, so it costs nothing here.
//!
//! When a write fails (disk full, state dir read-only), the caller refuses
//! the push with 503 (the registry sends it again) and [`Journal::health`]
//! says so for `/healthz`; the first write that works again clears it, and
//! [`Journal::check`] tries one for `/healthz` so that the status recovers
//! by itself once space returns.
//!
//! The connection sits behind a std mutex, held for one short statement or
//! transaction and never across an `.await`; callers from async code go
//! through `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::event::{Digest, ImageEvent, ImageRef, SourceKind};

/// The journal's id for an accepted push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("cannot open the journal at {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("cannot create the state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("journal write failed: {0}")]
    Write(#[from] rusqlite::Error),
    #[error("journal task failed: {0}")]
    Task(String),
}

/// What [`Journal::accept`] did with a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Stored as a new job.
    New(JobId),
    /// The same delivery (same sender event id) was accepted before.
    Duplicate(JobId),
}

/// One recorded step of one target's update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    pub target: String,
    pub step: String,
    /// JSON detail (the old container's id, policy, ...), step-specific.
    pub detail: Option<String>,
}

/// A job that had not finished when hoist stopped.
#[derive(Clone, Debug)]
pub struct Unfinished {
    pub id: JobId,
    pub event: ImageEvent,
    pub steps: Vec<StepRecord>,
}

/// A finished job as `/v1/history` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryEntry {
    pub id: JobId,
    /// `done`, `superseded` or `no_target`.
    pub state: String,
    pub finished_at: Option<DateTime<Utc>>,
    /// The job's report (the same as the notification), when it ran.
    #[serde(flatten)]
    pub report: Option<serde_json::Value>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT UNIQUE,
    reference   TEXT NOT NULL,
    digest      TEXT NOT NULL,
    source      TEXT NOT NULL,
    actor       TEXT,
    received_at TEXT NOT NULL,
    state       TEXT NOT NULL,
    finished_at TEXT,
    report      TEXT
);
CREATE INDEX IF NOT EXISTS jobs_open ON jobs(state) WHERE state IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS steps (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    target TEXT NOT NULL,
    step   TEXT NOT NULL,
    detail TEXT,
    at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_by_job ON steps(job_id);
-- Rebuilds asked of CI because a base image moved (`base`): one row per app
-- image and new base digest, so that a digest heard again (a redelivery, the
-- next poll, a restart) asks nothing more.
CREATE TABLE IF NOT EXISTS rebuilds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    image       TEXT NOT NULL,
    base        TEXT NOT NULL,
    new_digest  TEXT NOT NULL,
    old_digest  TEXT NOT NULL,
    targets     TEXT NOT NULL,
    hook        TEXT,
    source      TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    detail      TEXT,
    created_at  TEXT NOT NULL,
    finished_at TEXT,
    UNIQUE (image, base, new_digest)
);
CREATE INDEX IF NOT EXISTS rebuilds_pending ON rebuilds(state) WHERE state = 'pending';
-- The digest last seen of a base that an image names without one (`hoist.base=<ref>`).
CREATE TABLE IF NOT EXISTS base_digests (
    base    TEXT PRIMARY KEY,
    digest  TEXT NOT NULL,
    seen_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS previous_images (
    target   TEXT PRIMARY KEY,
    image    TEXT NOT NULL,
    digest   TEXT,
    image_id TEXT,
    at       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS write_check (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);
";

/// One rebuild asked for (or to ask for) because a base image moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebuild {
    /// The journal's id; 0 before it is stored.
    pub id: i64,
    /// The app image (tagged reference) whose base moved.
    pub image: String,
    /// The containers (or services) that run it.
    pub targets: Vec<String>,
    /// The base (tagged reference).
    pub base: String,
    pub old_digest: String,
    pub new_digest: String,
    /// Where to ask; `None` when no hook is configured (only notified).
    pub hook: Option<String>,
    /// The source that told of the new base digest (`poll`, `distribution`, ...).
    pub source: String,
    /// Calls made so far.
    pub attempts: u32,
}

/// How many finished jobs `/v1/history` returns.
const HISTORY_LIMIT: i64 = 500;

/// The journal. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    connection: Arc<Mutex<Connection>>,
    /// Why the last write failed; `None` once one works. A std mutex: held
    /// only to copy or set the value.
    write_failure: Arc<Mutex<Option<String>>>,
    /// Pushes waiting to be stored, each with where its answer goes: the
    /// next writer stores them all in one transaction. A std mutex, held
    /// only to push or take.
    accepting: Arc<Mutex<Vec<PendingAccept>>>,
}

/// A push waiting for [`Journal::accept`]'s next batch.
type PendingAccept = (ImageEvent, tokio::sync::oneshot::Sender<Acceptance>);

impl Journal {
    /// Opens (or creates) `<state_dir>/hoist.db`.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(state_dir).map_err(|source| JournalError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join("hoist.db");
        let open = || -> rusqlite::Result<Connection> {
            let connection = Connection::open(&path)?;
            connection.busy_timeout(std::time::Duration::from_secs(5))?;
            connection.execute_batch(SCHEMA)?;
            Ok(connection)
        };
        let connection = open().map_err(|source| JournalError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(Journal {
            connection: Arc::new(Mutex::new(connection)),
            write_failure: Arc::default(),
            accepting: Arc::default(),
        })
    }

    /// `Err` with the reason while the journal cannot be written (the last
    /// write failed); pushes are then refused with 503.
    pub fn health(&self) -> Result<(), String> {
        match lock(&self.write_failure).as_ref() {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// [`Journal::health`], after trying a write when the last one failed,
    /// so that the status clears by itself once the disk has room again.
    pub async fn check(&self) -> Result<(), String> {
        if self.health().is_ok() {
            return Ok(());
        }
        let probe = self
            .write(|db| {
                db.execute(
                    "INSERT OR REPLACE INTO write_check (id, at) VALUES (1, ?1)",
                    [Utc::now().to_rfc3339()],
                )
                .map(|_| ())
            })
            .await;
        probe.map_err(|e| e.to_string())
    }

    /// Runs a write on the connection and keeps [`Journal::health`] current.
    async fn write<T, F>(&self, work: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let result = self.with(work).await;
        self.note_write(result.as_ref().map(|_| ()));
        result
    }

    /// Keeps [`Journal::health`] current after a write that was made.
    fn note_write(&self, result: Result<(), &JournalError>) {
        let mut failure = lock(&self.write_failure);
        match result {
            Ok(()) => {
                if failure.take().is_some() {
                    tracing::info!("The journal can be written again.");
                }
            }
            Err(e) => {
                if failure.is_none() {
                    tracing::error!(error = %e, "The journal cannot be written (disk full or read-only?): pushes are refused with 503 until it can.");
                }
                *failure = Some(e.to_string());
            }
        }
    }

    /// Runs `work` on the connection off the async threads.
    async fn with<T, F>(&self, work: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || work(&mut lock(&connection)).map_err(JournalError::from))
            .await
            .map_err(|e| JournalError::Task(e.to_string()))?
    }

    /// Stores a push before it is acknowledged; a redelivery is recognised by its id.
    ///
    /// Group commit: the push joins a queue, and whichever caller gets the
    /// connection next stores every queued push in one transaction, so that
    /// concurrent pushes share one fsync instead of waiting for one each.
    pub async fn accept(&self, event: &ImageEvent) -> Result<Acceptance, JournalError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        lock(&self.accepting).push((event.clone(), answer));
        let accepting = self.accepting.clone();
        let stored = self
            .with(move |db| {
                let batch = std::mem::take(&mut *lock(&accepting));
                if batch.is_empty() {
                    // An earlier caller stored this one with its own batch.
                    return Ok(false);
                }
                let tx = db.transaction()?;
                let mut answers = Vec::with_capacity(batch.len());
                for (event, answer) in batch {
                    answers.push((store(&tx, &event)?, answer));
                }
                tx.commit()?;
                for (acceptance, answer) in answers {
                    // The caller may have gone (its request was cancelled): nothing to tell.
                    let _gone = answer.send(acceptance);
                }
                Ok(true)
            })
            .await;
        match &stored {
            Ok(false) => {}
            Ok(true) => self.note_write(Ok(())),
            Err(e) => self.note_write(Err(e)),
        }
        stored?;
        // Dropped unanswered when the batch that held it failed: so did this write.
        answered.await.map_err(|_| {
            let why = lock(&self.write_failure)
                .clone()
                .unwrap_or_else(|| "the batch was not stored".into());
            JournalError::Task(why)
        })
    }

    /// Records a step for a target, before it is taken.
    pub async fn step(
        &self,
        job: JobId,
        target: &str,
        step: &str,
        detail: Option<String>,
    ) -> Result<(), JournalError> {
        let (target, step) = (target.to_string(), step.to_string());
        self.write(move |db| {
            let tx = db.transaction()?;
            tx.execute(
                "UPDATE jobs SET state = 'running' WHERE id = ?1 AND state = 'queued'",
                [job.0],
            )?;
            tx.execute(
                "INSERT INTO steps (job_id, target, step, detail, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![job.0, target, step, detail, Utc::now().to_rfc3339()],
            )?;
            tx.commit()
        })
        .await
    }

    /// Closes a job: `state` is `done`, `superseded` or `no_target`.
    pub async fn finish(
        &self,
        job: JobId,
        state: &'static str,
        report: Option<serde_json::Value>,
    ) -> Result<(), JournalError> {
        let report = report.map(|r| r.to_string());
        self.write(move |db| {
            db.execute(
                "UPDATE jobs SET state = ?2, finished_at = ?3, report = ?4 WHERE id = ?1",
                params![job.0, state, Utc::now().to_rfc3339(), report],
            )
            .map(|_| ())
        })
        .await
    }

    /// Jobs accepted but not finished, oldest first, with their steps.
    pub async fn unfinished(&self) -> Result<Vec<Unfinished>, JournalError> {
        self.with(|db| {
            let mut jobs = Vec::new();
            let mut query = db.prepare(
                "SELECT id, delivery_id, reference, digest, source, actor, received_at
                 FROM jobs WHERE state IN ('queued', 'running') ORDER BY id",
            )?;
            let rows = query.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?;
            for row in rows {
                let (id, delivery_id, reference, digest, source, actor, received_at) = row?;
                // A row this version cannot read is skipped, not fatal: it was written by us.
                let (Ok(reference), Ok(digest)) = (ImageRef::parse(&reference), Digest::parse(&digest))
                else {
                    continue;
                };
                let source = SourceKind::from_name(&source).unwrap_or(SourceKind::Distribution);
                let received_at = DateTime::parse_from_rfc3339(&received_at)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_else(|_| Utc::now());
                let event = ImageEvent {
                    reference,
                    digest,
                    source,
                    delivery_id,
                    actor,
                    received_at,
                };
                jobs.push(Unfinished {
                    id: JobId(id),
                    event,
                    steps: Vec::new(),
                });
            }
            let mut steps =
                db.prepare("SELECT target, step, detail FROM steps WHERE job_id = ?1 ORDER BY rowid")?;
            for job in &mut jobs {
                job.steps = steps
                    .query_map([job.id.0], |r| {
                        Ok(StepRecord {
                            target: r.get(0)?,
                            step: r.get(1)?,
                            detail: r.get(2)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
            }
            Ok(jobs)
        })
        .await
    }

    /// The steps recorded for one job, in order.
    pub async fn steps(&self, job: JobId) -> Result<Vec<StepRecord>, JournalError> {
        self.with(move |db| {
            let mut query =
                db.prepare("SELECT target, step, detail FROM steps WHERE job_id = ?1 ORDER BY rowid")?;
            let rows = query.query_map([job.0], |r| {
                Ok(StepRecord {
                    target: r.get(0)?,
                    step: r.get(1)?,
                    detail: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// The most recent finished jobs, newest first.
    pub async fn history(&self) -> Result<Vec<HistoryEntry>, JournalError> {
        self.with(|db| {
            let mut query = db.prepare(
                "SELECT id, state, finished_at, report FROM jobs
                 WHERE state NOT IN ('queued', 'running') AND report IS NOT NULL
                 ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = query.query_map([HISTORY_LIMIT], |r| {
                let finished_at: Option<String> = r.get(2)?;
                let report: Option<String> = r.get(3)?;
                Ok(HistoryEntry {
                    id: JobId(r.get(0)?),
                    state: r.get(1)?,
                    finished_at: finished_at
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&Utc)),
                    report: report.and_then(|r| serde_json::from_str(&r).ok()),
                })
            })?;
            rows.collect()
        })
        .await
    }
}

/// Rebuild requests (see `crate::base`).
impl Journal {
    /// Records a rebuild to ask for; `None` when this image was already asked
    /// to be rebuilt for this base digest (before a restart too).
    pub async fn request_rebuild(&self, rebuild: Rebuild) -> Result<Option<i64>, JournalError> {
        self.write(move |db| {
            let targets = serde_json::to_string(&rebuild.targets).unwrap_or_else(|_| "[]".into());
            let inserted = db.execute(
                "INSERT OR IGNORE INTO rebuilds
                 (image, base, new_digest, old_digest, targets, hook, source, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8)",
                params![
                    rebuild.image,
                    rebuild.base,
                    rebuild.new_digest,
                    rebuild.old_digest,
                    targets,
                    rebuild.hook,
                    rebuild.source,
                    Utc::now().to_rfc3339()
                ],
            )?;
            Ok((inserted == 1).then(|| db.last_insert_rowid()))
        })
        .await
    }

    /// Rebuilds not yet asked for successfully, oldest first.
    pub async fn pending_rebuilds(&self) -> Result<Vec<Rebuild>, JournalError> {
        self.with(|db| {
            let mut query = db.prepare(
                "SELECT id, image, targets, base, old_digest, new_digest, hook, source, attempts
                 FROM rebuilds WHERE state = 'pending' ORDER BY id",
            )?;
            let rows = query.query_map([], |r| {
                let targets: String = r.get(2)?;
                Ok(Rebuild {
                    id: r.get(0)?,
                    image: r.get(1)?,
                    targets: serde_json::from_str(&targets).unwrap_or_default(),
                    base: r.get(3)?,
                    old_digest: r.get(4)?,
                    new_digest: r.get(5)?,
                    hook: r.get(6)?,
                    source: r.get(7)?,
                    attempts: r.get(8)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Counts one more call of a rebuild, and why it did not succeed.
    pub async fn rebuild_attempted(&self, id: i64, detail: String) -> Result<(), JournalError> {
        self.write(move |db| {
            db.execute(
                "UPDATE rebuilds SET attempts = attempts + 1, detail = ?2 WHERE id = ?1",
                params![id, detail],
            )
            .map(|_| ())
        })
        .await
    }

    /// Closes a rebuild: `state` is `done` (asked) or `failed` (refused for good).
    pub async fn finish_rebuild(
        &self,
        id: i64,
        state: &'static str,
        detail: String,
    ) -> Result<(), JournalError> {
        self.write(move |db| {
            db.execute(
                "UPDATE rebuilds SET state = ?2, attempts = attempts + 1, detail = ?3, finished_at = ?4
                 WHERE id = ?1",
                params![id, state, detail, Utc::now().to_rfc3339()],
            )
            .map(|_| ())
        })
        .await
    }

    /// The digest last seen of `base`, for images that name it without one.
    pub async fn base_digest(&self, base: String) -> Result<Option<Digest>, JournalError> {
        self.with(move |db| {
            let text: Option<String> = db
                .query_row("SELECT digest FROM base_digests WHERE base = ?1", [base], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(text.and_then(|t| Digest::parse(&t).ok()))
        })
        .await
    }

    /// Remembers the digest last seen of `base`.
    pub async fn set_base_digest(&self, base: String, digest: Digest) -> Result<(), JournalError> {
        self.write(move |db| {
            db.execute(
                "INSERT OR REPLACE INTO base_digests (base, digest, seen_at) VALUES (?1, ?2, ?3)",
                params![base, digest.as_str(), Utc::now().to_rfc3339()],
            )
            .map(|_| ())
        })
        .await
    }
}

/// What a target ran before its last successful update: what `hoist
/// rollback` puts back. Kept apart from the jobs, so retention never prunes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PreviousImage {
    /// The tagged reference the target ran.
    pub image: String,
    /// The digest it ran, when known.
    pub digest: Option<String>,
    /// The engine's image ID, when known (kept on disk for the rollback).
    pub image_id: Option<String>,
    pub at: DateTime<Utc>,
}

impl Journal {
    /// Removes finished jobs (and their steps) that finished more than
    /// `older_than` ago; returns how many. Open jobs are never pruned.
    pub async fn prune(&self, older_than: std::time::Duration) -> Result<usize, JournalError> {
        let cutoff = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|d| Utc::now().checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
            .to_rfc3339();
        self.write(move |db| {
            let tx = db.transaction()?;
            let old = "SELECT id FROM jobs WHERE state NOT IN ('queued', 'running') AND finished_at < ?1";
            tx.execute(&format!("DELETE FROM steps WHERE job_id IN ({old})"), [&cutoff])?;
            let pruned = tx.execute(
                "DELETE FROM jobs WHERE state NOT IN ('queued', 'running') AND finished_at < ?1",
                [&cutoff],
            )?;
            tx.commit()?;
            Ok(pruned)
        })
        .await
    }

    /// Records what `target` ran before an update that succeeded; returns
    /// what was recorded before (the image before that one), if anything.
    pub async fn set_previous(
        &self,
        target: &str,
        previous: PreviousImage,
    ) -> Result<Option<PreviousImage>, JournalError> {
        let target = target.to_string();
        self.write(move |db| {
            let tx = db.transaction()?;
            let before = read_previous(&tx, &target)?;
            tx.execute(
                "INSERT OR REPLACE INTO previous_images (target, image, digest, image_id, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    target,
                    previous.image,
                    previous.digest,
                    previous.image_id,
                    previous.at.to_rfc3339()
                ],
            )?;
            tx.commit()?;
            Ok(before)
        })
        .await
    }

    /// Every image ID some target would be rolled back to.
    pub async fn previous_image_ids(&self) -> Result<std::collections::HashSet<String>, JournalError> {
        self.with(|db| {
            let mut query = db.prepare("SELECT image_id FROM previous_images WHERE image_id IS NOT NULL")?;
            let ids = query.query_map([], |r| r.get(0))?;
            ids.collect()
        })
        .await
    }

    /// What `target` ran before its last successful update, if recorded.
    pub async fn previous(&self, target: &str) -> Result<Option<PreviousImage>, JournalError> {
        let target = target.to_string();
        self.with(move |db| read_previous(db, &target)).await
    }
}

fn read_previous(db: &Connection, target: &str) -> rusqlite::Result<Option<PreviousImage>> {
    db.query_row(
        "SELECT image, digest, image_id, at FROM previous_images WHERE target = ?1",
        [target],
        |r| {
            let at: String = r.get(3)?;
            Ok(PreviousImage {
                image: r.get(0)?,
                digest: r.get(1)?,
                image_id: r.get(2)?,
                at: DateTime::parse_from_rfc3339(&at)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default(),
            })
        },
    )
    .optional()
}

/// Stores one push in `tx`, or finds it stored before (same delivery id).
fn store(tx: &rusqlite::Transaction<'_>, event: &ImageEvent) -> rusqlite::Result<Acceptance> {
    if let Some(delivery) = &event.delivery_id {
        let known: Option<i64> = tx
            .query_row("SELECT id FROM jobs WHERE delivery_id = ?1", [delivery], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = known {
            return Ok(Acceptance::Duplicate(JobId(id)));
        }
    }
    tx.execute(
        "INSERT INTO jobs (delivery_id, reference, digest, source, actor, received_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued')",
        params![
            event.delivery_id,
            event.reference.to_string(),
            event.digest.as_str(),
            event.source.as_str(),
            event.actor,
            event.received_at.to_rfc3339(),
        ],
    )?;
    Ok(Acceptance::New(JobId(tx.last_insert_rowid())))
}

/// Locks a std mutex, recovering from poison: a panic mid-statement leaves
/// SQLite's own state consistent (the transaction is rolled back).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn event(delivery: Option<&str>) -> ImageEvent {
        ImageEvent {
            reference: ImageRef::parse("127.0.0.1:5000/team/app:1.4").unwrap(),
            digest: Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap(),
            source: SourceKind::Distribution,
            delivery_id: delivery.map(str::to_string),
            actor: Some("ci".into()),
            received_at: Utc::now(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_rebuild_per_image_and_base_digest_across_a_reopen_pending_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let rebuild = Rebuild {
            id: 0,
            image: "127.0.0.1:5000/app/web:1".into(),
            targets: vec!["web".into()],
            base: "127.0.0.1:5000/base/img:1".into(),
            old_digest: format!("sha256:{}", "a".repeat(64)),
            new_digest: format!("sha256:{}", "b".repeat(64)),
            hook: Some("http://127.0.0.1:9/hook".into()),
            source: "poll".into(),
            attempts: 0,
        };
        let journal = Journal::open(dir.path()).unwrap();
        let id = journal.request_rebuild(rebuild.clone()).await.unwrap().unwrap();
        assert_eq!(journal.request_rebuild(rebuild.clone()).await.unwrap(), None);
        journal.rebuild_attempted(id, "HTTP 503".into()).await.unwrap();
        drop(journal);
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(
            journal.request_rebuild(rebuild.clone()).await.unwrap(),
            None,
            "after a reopen too"
        );
        let pending = journal.pending_rebuilds().await.unwrap();
        assert_eq!(
            pending,
            [Rebuild {
                id,
                attempts: 1,
                ..rebuild.clone()
            }]
        );
        journal
            .finish_rebuild(id, "done", "HTTP 200".into())
            .await
            .unwrap();
        assert!(journal.pending_rebuilds().await.unwrap().is_empty());
        // Another base digest is another rebuild.
        let next = Rebuild {
            new_digest: format!("sha256:{}", "c".repeat(64)),
            ..rebuild
        };
        assert!(journal.request_rebuild(next).await.unwrap().is_some());
        let base = "127.0.0.1:5000/base/img:1".to_string();
        assert_eq!(journal.base_digest(base.clone()).await.unwrap(), None);
        let digest = Digest::parse(&format!("sha256:{}", "d".repeat(64))).unwrap();
        journal
            .set_base_digest(base.clone(), digest.clone())
            .await
            .unwrap();
        assert_eq!(journal.base_digest(base).await.unwrap(), Some(digest));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn accepted_jobs_survive_a_reopen_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let Acceptance::New(first) = journal.accept(&event(Some("e-1"))).await.unwrap() else {
            panic!()
        };
        assert_eq!(
            journal.accept(&event(Some("e-1"))).await.unwrap(),
            Acceptance::Duplicate(first)
        );
        let Acceptance::New(second) = journal.accept(&event(None)).await.unwrap() else {
            panic!()
        };
        journal
            .step(first, "web", "parking", Some("{\"old\":\"x\"}".into()))
            .await
            .unwrap();
        drop(journal);

        let journal = Journal::open(dir.path()).unwrap();
        let open = journal.unfinished().await.unwrap();
        assert_eq!(open.iter().map(|j| j.id).collect::<Vec<_>>(), vec![first, second]);
        assert_eq!(
            open[0].event,
            event(Some("e-1")).clone_with_time(open[0].event.received_at)
        );
        assert_eq!(
            open[0].steps,
            vec![StepRecord {
                target: "web".into(),
                step: "parking".into(),
                detail: Some("{\"old\":\"x\"}".into())
            }]
        );
        journal
            .finish(first, "done", Some(serde_json::json!({"image": "x"})))
            .await
            .unwrap();
        journal.finish(second, "superseded", None).await.unwrap();
        assert!(journal.unfinished().await.unwrap().is_empty());
        let history = journal.history().await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].id, first);
        assert_eq!(history[0].report, Some(serde_json::json!({"image": "x"})));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_prunes_old_finished_jobs_only_and_keeps_previous_images() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for n in 0..3 {
            let Acceptance::New(id) = journal.accept(&event(Some(&format!("p-{n}")))).await.unwrap() else {
                panic!()
            };
            journal.step(id, "web", "parking", None).await.unwrap();
            ids.push(id);
        }
        journal
            .finish(ids[0], "done", Some(serde_json::json!({"n": 0})))
            .await
            .unwrap();
        journal
            .finish(ids[1], "done", Some(serde_json::json!({"n": 1})))
            .await
            .unwrap();
        // ids[0] finished 100 days ago; ids[2] is still open (and older).
        {
            let db = lock(&journal.connection);
            let long_ago = (Utc::now() - chrono::Duration::days(100)).to_rfc3339();
            db.execute(
                "UPDATE jobs SET finished_at = ?1 WHERE id = ?2",
                params![long_ago, ids[0].0],
            )
            .unwrap();
        }
        let previous = PreviousImage {
            image: "127.0.0.1:5000/team/app:1.4".into(),
            digest: Some(format!("sha256:{}", "b".repeat(64))),
            image_id: Some("sha256:old".into()),
            at: Utc::now() - chrono::Duration::days(200),
        };
        assert_eq!(journal.set_previous("web", previous.clone()).await.unwrap(), None);
        let pruned = journal
            .prune(std::time::Duration::from_secs(90 * 86400))
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        let history = journal.history().await.unwrap();
        assert_eq!(history.iter().map(|h| h.id).collect::<Vec<_>>(), vec![ids[1]]);
        assert_eq!(journal.unfinished().await.unwrap().len(), 1, "open jobs stay");
        let steps: i64 = lock(&journal.connection)
            .query_row("SELECT COUNT(*) FROM steps WHERE job_id = ?1", [ids[0].0], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(steps, 0, "a pruned job's steps go with it");
        assert_eq!(
            journal.previous("web").await.unwrap().unwrap().image_id,
            previous.image_id
        );
        let newer = PreviousImage {
            image_id: Some("sha256:newer".into()),
            ..previous.clone()
        };
        assert_eq!(
            journal
                .set_previous("web", newer)
                .await
                .unwrap()
                .unwrap()
                .image_id,
            previous.image_id,
            "the one recorded before is handed back (to remove, with HOIST_REMOVE_OLD_IMAGES)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_commit_is_synced_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let (mode, sync): (String, i64) = {
            let db = lock(&journal.connection);
            (
                db.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap(),
                db.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap(),
            )
        };
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous=FULL: a 202 survives a power cut");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_journal_that_cannot_be_written_says_so_until_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.health(), Ok(()));
        // What a full disk or a read-only state dir does to a write.
        lock(&journal.connection)
            .execute_batch("PRAGMA query_only = ON")
            .unwrap();
        assert!(journal.accept(&event(Some("e-1"))).await.is_err());
        assert!(journal.health().is_err());
        assert!(journal.check().await.is_err(), "still failing");
        lock(&journal.connection)
            .execute_batch("PRAGMA query_only = OFF")
            .unwrap();
        assert_eq!(journal.check().await, Ok(()), "a write works again");
        assert_eq!(journal.health(), Ok(()));
        assert!(matches!(
            journal.accept(&event(Some("e-1"))).await,
            Ok(Acceptance::New(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_pushes_are_stored_once_each_in_shared_commits() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        // 64 pushes at once, each delivered twice (a sender's retry).
        let tasks: Vec<_> = (0..128)
            .map(|n| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    (
                        n % 64,
                        journal.accept(&event(Some(&format!("e-{}", n % 64)))).await,
                    )
                })
            })
            .collect();
        let mut ids: HashMap<i32, Vec<Acceptance>> = HashMap::new();
        for task in tasks {
            let (delivery, acceptance) = task.await.unwrap();
            ids.entry(delivery).or_default().push(acceptance.unwrap());
        }
        let mut new_ids = std::collections::HashSet::new();
        for acceptances in ids.values() {
            let [first, second] = acceptances.as_slice() else {
                panic!("{acceptances:?}")
            };
            let (new, duplicate) = match (first, second) {
                (Acceptance::New(a), Acceptance::Duplicate(b))
                | (Acceptance::Duplicate(b), Acceptance::New(a)) => (a, b),
                other => panic!("one new, one duplicate: {other:?}"),
            };
            assert_eq!(new, duplicate);
            assert!(new_ids.insert(*new));
        }
        assert_eq!(journal.unfinished().await.unwrap().len(), 64);
    }

    impl ImageEvent {
        fn clone_with_time(mut self, at: DateTime<Utc>) -> ImageEvent {
            self.received_at = at;
            self
        }
    }
}
