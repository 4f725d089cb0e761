//! hoist keeps Docker hosts running the image that was just pushed.
//!
//! ```text
//! registry push ──► source::webhook ──► intake ──► ImageEvent ──► job::runner ──► deploy::container
//! (Distribution,    (auth, parse)       (resolve   (bounded       (per-tag order, (pull, create,
//! Harbor, GitHub,                       digest,    queue)         matcher lookup) park old, verify,
//! Gitea, Docker                         journal,                    │             roll back)
//! Hub, Quay, ACR,                       202/4xx)                    │
//! CI call)                                                          │
//! docker events ──► inventory::watch ──► inventory::index snapshot ─┘
//!                                                                   │ Notification
//!                                                                   ▼
//!                                         journal (history API) · notify
//! ```
//!
//! Modules, from the bottom layer up (each depends only on modules above it
//! in this list, never on one below; there are no dependency cycles):
//!
//! - [`secret`], [`backoff`], [`tls`], [`shutdown`]: small utilities.
//! - [`settings`] reads and validates variables; each stage owns its settings type.
//! - [`event`] is the vocabulary: image references, digests, the normalized push.
//! - [`labels`] is the label contract: what a container's or service's labels ask for.
//! - [`journal`] is the durable record of jobs and steps (crash recovery, history).
//! - [`telemetry`]: logs and metrics.
//! - [`registry`] asks registries for a tag's digest, with the docker config's credentials.
//! - [`engine`] is the adapter to the Docker Engine API; no other module sees bollard's client.
//! - [`inventory`] knows which containers and services opted in, kept current from the engine's events.
//! - [`matcher`] looks up the targets of an event.
//! - [`deploy`] changes what runs, and never leaves fewer containers running than before.
//!   Swarm services are pinned to the pushed digest and rolled by Swarm itself.
//! - [`notify`] tells Slack, Teams and email what a job did.
//! - [`job`] orders the work: one job per tag at a time, newest push wins.
//! - [`base`] asks CI to rebuild an image when the base it was built on moves.
//! - [`intake`] is the one path every route ends in: match, journal, queue, answer.
//! - [`source`] turns registry webhooks into [`event::ImageEvent`]s (pure parsers + the routes), and polls.
//! - [`swarm`] makes hoist a global service: only the leader manager's hoist
//!   updates services, and every push is forwarded to every node's hoist.
//! - [`plan`] answers what a push of a tag would redeploy, and why not the rest.
//! - [`config`] assembles every stage's settings into one [`Config`]; [`api`] and [`app`] wire it all;
//!   [`cli`] is the operator's client of a running hoist.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod secret;
pub mod shutdown;
pub mod tls;

pub mod settings;

pub mod event;
pub mod labels;
pub mod journal;
pub mod telemetry;

pub mod registry;
pub mod engine;
pub mod inventory;
pub mod matcher;
pub mod deploy;
pub mod notify;
pub mod job;
pub mod base;
pub mod intake;
pub mod source;
pub mod swarm;
pub mod plan;

pub mod config;
pub mod api;
pub mod app;
pub mod cli;

/// Properties of the parsers of untrusted input, for the fuzz targets and property tests.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;

pub use app::{run, start, RunningApp, StartError};
pub use config::{Config, ConfigError};
