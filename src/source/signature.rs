//! HMAC-SHA256 signatures of signed webhooks (GitHub, Gitea, Forgejo).
//!
//! The sender signs the exact bytes of the body with the shared secret and
//! sends the hex digest in a header: GitHub as `X-Hub-Signature-256:
//! sha256=<hex>`, Gitea and Forgejo as `X-Gitea-Signature: <hex>` /
//! `X-Forgejo-Signature: <hex>`. The check runs on the raw body before it is
//! parsed, and compares in constant time (`ring::hmac::verify`).

use ring::hmac;

use crate::secret::Secret;

/// Whether `signature` (lower- or upper-case hex, with or without the
/// `sha256=` prefix) is the HMAC-SHA256 of `body` under `secret`.
pub fn verify(secret: &Secret<String>, body: &[u8], signature: &str) -> bool {
    let signature = signature.trim();
    let hex = signature.strip_prefix("sha256=").unwrap_or(signature);
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
    hmac::verify(&key, body, &tag).is_ok()
}

/// The signature a sender would put in the header, as lower-case hex (for tests and tools).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::sign(&key, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::fixture;

    fn secret(text: &str) -> Secret<String> {
        Secret::new(text.to_string())
    }

    /// The vector from GitHub's "Validating webhook deliveries".
    #[test]
    fn githubs_documented_vector() {
        let expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign("It's a Secret to Everybody", b"Hello, World!"), expected);
        assert!(verify(
            &secret("It's a Secret to Everybody"),
            b"Hello, World!",
            &format!("sha256={expected}")
        ));
    }

    /// The vectors of tests/fixtures/payloads/README.md, over the committed bytes.
    #[test]
    fn the_fixture_vectors() {
        let key = secret("test-secret");
        let github = fixture("github-package-published.json");
        assert!(verify(
            &key,
            &github,
            "sha256=43cef6bc8622d921d22f1b6d60bdbc5f9382ca8f6b4b9e2b661380406bb3e73a"
        ));
        let gitea = fixture("gitea-package.json");
        let gitea_signature = "eb6424a1c1d55d7522f9ee2473696b943caa129463391ffcfa7720114086a968";
        assert!(verify(&key, &gitea, gitea_signature));
        assert!(verify(&key, &gitea, &gitea_signature.to_uppercase()));
        assert!(verify(&key, &gitea, &format!("sha256={gitea_signature}")));
    }

    #[test]
    fn wrong_secrets_bodies_and_malformed_signatures_fail() {
        let key = secret("test-secret");
        let body = fixture("gitea-package.json");
        let good = sign("test-secret", &body);
        assert!(verify(&key, &body, &good));
        assert!(!verify(&secret("test-secreT"), &body, &good));
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert!(!verify(&key, &tampered, &good));
        for bad in [
            "",
            "sha256=",
            "sha1=abcd",
            &good[..62],
            &format!("{good}00"),
            "zz",
            "é",
        ] {
            assert!(!verify(&key, &body, bad), "{bad:?}");
        }
    }
}
