//! The single integration-test binary (`cargo test --test integration`).

/// Loopback stand-ins for the services hoist talks to.
mod harness;
/// Slack and Teams payloads on a recorder, email through real SMTP, faults, secrets.
mod notify;
