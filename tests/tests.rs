//! The integration suite: one binary, on the real engine, the real
//! Distribution registry and (for email) a real SMTP server.
//!
//! - `webhook`: intake over HTTP: fixtures, auth, malformed and oversized bodies.
//! - `container`: a push redeploys labelled containers; config preserved; rollback; outages.

mod harness;

mod container;
mod webhook;
