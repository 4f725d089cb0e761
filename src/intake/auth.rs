//! Who may post: the credential checks the routes share.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, Extensions, HeaderMap};
use tokio::time::Instant;

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

/// The address a request came from, when the server recorded it (`ConnectInfo`).
pub fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// Whether `presented` (a token from a request's path) is the webhook token, in
/// constant time (always, without a token).
pub fn path_token_matches(token: Option<&Secret<String>>, presented: &str) -> bool {
    token.is_none_or(|token| token.matches(presented))
}

/// How often one address's rejected requests are logged.
pub const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Addresses remembered before the ones quiet for a whole interval are forgotten.
const REMEMBERED_ADDRESSES: usize = 1024;

/// Logs unauthenticated requests at most once per [`REJECTION_LOG_INTERVAL`]
/// per source address, so a scanner or a misconfigured registry retrying in a
/// loop cannot flood the log (every request is still counted in metrics).
#[derive(Default)]
pub struct RejectionLog {
    /// Address → when it was last logged, and how many were not logged since.
    /// A std mutex: held for a lookup, never across `.await`.
    seen: Mutex<HashMap<Option<IpAddr>, (Instant, u64)>>,
}

impl RejectionLog {
    /// `Some(n)` when a rejection from `address` should be logged now, `n`
    /// being how many from it went unlogged since the last line; `None` to
    /// stay quiet. `None` as the address (unknown peer) is one address.
    pub fn should_log(&self, address: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED_ADDRESSES && !seen.contains_key(&address) {
            seen.retain(|_, (logged, _)| now.duration_since(*logged) < REJECTION_LOG_INTERVAL);
        }
        match seen.get_mut(&address) {
            Some((logged, suppressed)) if now.duration_since(*logged) < REJECTION_LOG_INTERVAL => {
                *suppressed += 1;
                None
            }
            Some((logged, suppressed)) => {
                let unlogged = std::mem::take(suppressed);
                *logged = now;
                Some(unlogged)
            }
            None => {
                seen.insert(address, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_path_tokens() {
        let token = Secret::new("s3cret".to_string());
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(Some(&token), &headers));
        assert!(bearer_matches(None, &headers), "no token configured");
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(bearer_matches(Some(&token), &headers));
        headers.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!bearer_matches(Some(&token), &headers));
        headers.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!bearer_matches(Some(&token), &headers));
        assert!(path_token_matches(Some(&token), "s3cret"));
        assert!(!path_token_matches(Some(&token), "s3cret "));
        assert!(!path_token_matches(Some(&token), ""));
        assert!(path_token_matches(None, "anything"));
    }

    #[tokio::test(start_paused = true)]
    async fn rejections_are_logged_once_a_minute_per_address() {
        let log = RejectionLog::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert_eq!(log.should_log(Some(a)), Some(0));
        assert_eq!(log.should_log(Some(a)), None);
        assert_eq!(log.should_log(Some(a)), None);
        assert_eq!(
            log.should_log(Some(b)),
            Some(0),
            "another address has its own minute"
        );
        assert_eq!(log.should_log(None), Some(0));
        tokio::time::advance(REJECTION_LOG_INTERVAL - Duration::from_secs(1)).await;
        assert_eq!(log.should_log(Some(a)), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            log.should_log(Some(a)),
            Some(3),
            "the next line says how many went unlogged"
        );
        assert_eq!(log.should_log(Some(a)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_of_addresses_is_bounded() {
        let log = RejectionLog::default();
        for n in 0..REMEMBERED_ADDRESSES as u32 {
            log.should_log(Some(IpAddr::from(n.to_be_bytes())));
        }
        tokio::time::advance(REJECTION_LOG_INTERVAL).await;
        log.should_log(Some("198.51.100.7".parse().unwrap()));
        assert_eq!(log.seen.lock().unwrap().len(), 1, "the quiet ones were forgotten");
    }
}
