//! Harbor webhooks. STUB.

use super::{ParseError, RegistryEvent};

/// Parses a Harbor webhook (Default format, legacy `pushImage`, or CloudEvents).
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let _ = body;
    todo!()
}
