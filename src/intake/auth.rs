//! Who may post: the credential checks the routes share.

use axum::http::{header, HeaderMap};

use crate::secret::Secret;

/// Whether `headers` carry `Authorization: Bearer <token>` (always, without a token).
pub fn bearer_matches(token: Option<&Secret<String>>, headers: &HeaderMap) -> bool {
    let Some(token) = token else { return true };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    presented.is_some_and(|p| token.matches(p))
}
