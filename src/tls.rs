//! TLS set-up shared by every HTTPS client (registry, notifiers).

/// Makes ring the process's rustls crypto provider, once.
///
/// reqwest is built with `rustls-no-provider` (to keep aws-lc-rs out of the
/// build), so a provider must be installed before any client is built. Every
/// constructor here calls it; calling it again, or after the app installed
/// one, is harmless.
pub fn install_crypto_provider() {
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        // A provider was installed already (by us or by the app): nothing to do.
    }
}
