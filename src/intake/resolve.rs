//! Digests for pushes that name none: the seam between intake and the
//! registry client.
//!
//! Docker Hub, Quay, Gitea and a CI call without `digest` say "this tag was
//! pushed" but not what it now points at. Before such a push is journaled and
//! acknowledged, intake asks the registry that the matching targets pull from
//! (a HEAD of the tag's manifest, `registry::Client`) and the job then pulls
//! that digest, so every target of the push gets the same image even if the
//! tag moves again before the pull.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::event::{Digest, ImageRef};
use crate::registry::{self, RegistryError};

/// How long a look-up may wait out a registry's rate limit or outage (never
/// asking before its `Retry-After`) before intake answers 503: Docker Hub and
/// Gitea do not send a webhook again by themselves, so a short wait is worth it.
const WAIT_FOR_REGISTRY: Duration = Duration::from_secs(5);

/// The future [`DigestResolver::resolve`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = Result<Digest, ResolveError>> + Send + 'a>>;

/// Asks a registry which digest a tag names now. Object-safe, so intake holds
/// an `Arc<dyn DigestResolver>` and tests can give it their own.
pub trait DigestResolver: Send + Sync {
    /// The digest of `image`'s tag (`image` has a tag and no digest), asked of
    /// the registry `image` names, with its credentials.
    fn resolve<'a>(&'a self, image: &'a ImageRef) -> ResolveFuture<'a>;
}

/// Why a tag's digest could not be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Worth asking again later: the registry is unreachable, slow, answers
    /// 5xx or 429. `retry_after` is the registry's own wish, when it said one.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Asking again will not help: no such tag, credentials refused.
    #[error("{0}")]
    Permanent(String),
}

/// The registry client resolves with a `HEAD` of the tag's manifest, with the
/// docker config's credentials, honouring each registry's rate limits.
impl DigestResolver for registry::Client {
    fn resolve<'a>(&'a self, image: &'a ImageRef) -> ResolveFuture<'a> {
        Box::pin(async move {
            self.digest_within(image, WAIT_FOR_REGISTRY)
                .await
                .map_err(ResolveError::from)
        })
    }
}

impl From<RegistryError> for ResolveError {
    fn from(error: RegistryError) -> Self {
        if error.is_transient() {
            ResolveError::Transient {
                retry_after: error
                    .retry_at()
                    .map(|at| at.saturating_duration_since(tokio::time::Instant::now())),
                message: error.to_string(),
            }
        } else {
            ResolveError::Permanent(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn registry_errors_are_transient_with_their_wait_or_permanent() {
        let rate_limited = RegistryError::RateLimited {
            registry: "registry.test".into(),
            repository: "team/app".into(),
            until: chrono::Utc::now(),
            retry_at: tokio::time::Instant::now() + Duration::from_secs(42),
        };
        match ResolveError::from(rate_limited) {
            ResolveError::Transient { retry_after, message } => {
                assert_eq!(retry_after, Some(Duration::from_secs(42)));
                assert!(message.contains("rate-limiting"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let unreachable = RegistryError::Unreachable {
            registry: "registry.test".into(),
            repository: "team/app".into(),
            reason: "connection refused".into(),
            retry_at: None,
        };
        assert!(matches!(
            ResolveError::from(unreachable),
            ResolveError::Transient {
                retry_after: None,
                ..
            }
        ));
        let missing = RegistryError::NotFound {
            registry: "registry.test".into(),
            repository: "team/app".into(),
            reference: "1.4".into(),
        };
        assert_eq!(
            ResolveError::from(missing),
            ResolveError::Permanent("registry registry.test has no team/app:1.4".into())
        );
    }
}
