//! Test servers on loopback, each stopped on drop.

/// HTTP receiver recording exact requests (Slack and Teams stand-ins).
pub mod recorder;
/// aiosmtpd on 127.0.0.1:0, optionally with STARTTLS and AUTH.
pub mod smtp;
