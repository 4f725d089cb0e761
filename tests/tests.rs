//! The integration suite: one binary, on the real engine, the real
//! Distribution registry and (for email) a real SMTP server.
//!
//! - `webhook`: intake over HTTP: fixtures, auth, malformed and oversized bodies.
//! - `container`: a push redeploys labelled containers; config preserved; rollback; outages.
//! - `swarm`: on a single-node swarm the suite sets up and tears down: services
//!   pinned to the pushed digest, Swarm rollback reported, out-of-band spec
//!   changes kept; a new leader following an update under way; fan-out between
//!   two hoists, only the leader updating services.

mod harness;

mod container;
mod swarm;
mod webhook;
