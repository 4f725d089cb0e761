//! Docker Distribution (registry:2) notifications. STUB.

use super::{ParseError, RegistryEvent};

/// Parses a notification envelope (v1 or v2 media type) into every event it holds.
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let _ = body;
    todo!()
}
