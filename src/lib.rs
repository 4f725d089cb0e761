//! hoist keeps Docker hosts running the image that was just pushed.
//!
//! ```text
//! registry push ──► source::webhook ──► intake ──► ImageEvent ──► job::runner ──► deploy::container
//! (Distribution,    (auth, parse)       (resolve   (bounded       (per-tag order, (pull, park old,
//! Harbor, GitHub,                       digest,    queue)         matcher lookup) create, verify,
//! Gitea, Docker                         journal,                    │             roll back)
//! Hub, Quay, ACR,                       202/4xx)                    │
//! CI call)                                                          │
//! docker events ──► inventory::watch ──► inventory::index snapshot ─┘
//!                                                                   │ Notification
//!                                                                   ▼
//!                                     job::journal (history API) · notify
//! ```
//!
//! - [`source`] turns registry webhooks into [`event::ImageEvent`]s (pure parsers + the routes).
//! - [`intake`] is the one path every route ends in: match, journal, queue, answer.
//! - [`registry`] asks registries for a tag's digest, with the docker config's credentials.
//! - [`inventory`] knows which containers opted in, kept current from the engine's events.
//! - [`matcher`] looks up the targets of an event.
//! - [`job`] orders the work: one job per tag at a time, newest push wins.
//! - [`deploy`] changes what runs, and never leaves fewer containers running than before.
//!   Swarm services are pinned to the pushed digest and rolled by Swarm itself.
//! - [`swarm`] makes hoist a global service: only the leader manager's hoist
//!   updates services, and every push is forwarded to every node's hoist.
//! - [`notify`] and the journal's history (`/v1/history`) tell what happened.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod secret;
pub mod shutdown;
pub mod telemetry;

pub mod deploy;
pub mod event;
pub mod intake;
pub mod inventory;
pub mod job;
pub mod matcher;
pub mod notify;
pub mod registry;
pub mod source;
pub mod swarm;

pub mod api;
pub mod app;
pub mod cli;
pub mod plan;

/// Properties of the parsers of untrusted input, for the fuzz targets and property tests.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;

pub use app::{run, start, RunningApp, StartError};
pub use config::{Config, ConfigError};
