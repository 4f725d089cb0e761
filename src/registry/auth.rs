//! The registry's side of a login: `WWW-Authenticate` challenges, the Bearer
//! token flow (Docker's token spec, as Distribution, Docker Hub, GHCR, Quay,
//! Harbor and ACR speak it) and `Retry-After`.
//!
//! A 401 names a scheme. `Basic realm=...`: send the user and password with
//! every request. `Bearer realm=...,service=...,scope=...`: ask the realm for a
//! token (with the user and password as Basic credentials, or the identity
//! token as an OAuth refresh token, or anonymously), then send the token.
//! Tokens are kept until shortly before they expire.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

use super::credentials::RegistryAuth;
use crate::secret::Secret;

/// A token is dropped this long before it expires, so it never expires in flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// The token spec's lifetime when the answer names none.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest `Retry-After` honoured; longer ones are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How a registry wants requests authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// The challenge of a 401 answer: Bearer preferred when both are offered.
    pub fn from_headers(headers: &HeaderMap) -> Option<Challenge> {
        let challenges: Vec<Challenge> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }))
            .or_else(|| challenges.first())
            .cloned()
    }
}

/// Parses a `WWW-Authenticate` value (RFC 7235): one or more challenges, each
/// a scheme followed by `name=value` or `name="quoted value"` parameters.
/// Unknown schemes are skipped; nothing here can panic on odd input.
pub fn parse_challenges(value: &str) -> Vec<Challenge> {
    let mut found = Vec::new();
    let mut current: Option<(String, Vec<(String, String)>)> = None;
    let mut rest = value.trim();
    let finish = |current: Option<(String, Vec<(String, String)>)>, found: &mut Vec<Challenge>| {
        let Some((scheme, params)) = current else { return };
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => found.push(Challenge::Basic),
            "bearer" => {
                if let Some(realm) = get("realm").filter(|r| !r.is_empty()) {
                    found.push(Challenge::Bearer {
                        realm,
                        service: get("service"),
                        scope: get("scope"),
                    });
                }
            }
            _ => {}
        }
    };
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let token_end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_end);
        if token.is_empty() {
            break;
        }
        let after_trimmed = after.trim_start();
        if let Some(value_text) = after_trimmed.strip_prefix('=') {
            // A parameter of the current challenge.
            let value_text = value_text.trim_start();
            let (value, remaining) = if let Some(quoted) = value_text.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        other => value.push(other),
                    }
                }
                (value, &quoted[end.min(quoted.len())..])
            } else {
                let end = value_text.find(',').unwrap_or(value_text.len());
                (value_text[..end].trim().to_string(), &value_text[end..])
            };
            if let Some((_, params)) = current.as_mut() {
                params.push((token.to_string(), value));
            }
            rest = remaining;
        } else {
            // A new scheme.
            finish(current.take(), &mut found);
            current = Some((token.to_string(), Vec::new()));
            rest = after;
        }
    }
    finish(current, &mut found);
    found
}

/// A Bearer token and when to stop using it.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: Secret<String>,
    pub usable_until: Instant,
}

impl Token {
    pub fn usable(&self) -> bool {
        Instant::now() < self.usable_until
    }
}

/// Why no token was had.
#[derive(Debug)]
pub enum TokenError {
    /// The token service refused the credentials (401/403).
    Refused(StatusCode),
    /// 429 from the token service; `retry_after` when it said.
    RateLimited(Option<Duration>),
    /// No answer, or a 5xx.
    Unavailable(String),
    /// An answer that is not a token.
    Protocol(String),
}

/// Asks the challenge's realm for a token for `scope`.
pub async fn fetch_token(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    auth: Option<&RegistryAuth>,
) -> Result<Token, TokenError> {
    let mut url =
        reqwest::Url::parse(realm).map_err(|e| TokenError::Protocol(format!("bad realm {realm:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TokenError::Protocol(format!("bad realm {realm:?}: not http(s)")));
    }
    let request = match auth.and_then(|a| a.identity_token.as_ref()) {
        // An identity token from `docker login` is an OAuth2 refresh token.
        Some(refresh) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("client_id", "hoist")
                .append_pair("refresh_token", refresh.expose())
                .append_pair("scope", scope);
            if let Some(service) = service {
                form.append_pair("service", service);
            }
            http.post(url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.finish())
        }
        None => {
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                query.append_pair("scope", scope);
            }
            let request = http.get(url);
            match auth.and_then(RegistryAuth::basic) {
                Some((user, password)) => request.basic_auth(user, Some(password)),
                None => request,
            }
        }
    };
    let response = request
        .send()
        .await
        .map_err(|e| TokenError::Unavailable(format!("token service: {}", error_chain(&e))))?;
    let status = response.status();
    match status {
        s if s.is_success() => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(TokenError::Refused(status)),
        StatusCode::TOO_MANY_REQUESTS => {
            return Err(TokenError::RateLimited(retry_after(
                response.headers(),
                Utc::now(),
            )))
        }
        s if s.is_server_error() => {
            return Err(TokenError::Unavailable(format!("token service answered {s}")))
        }
        s => return Err(TokenError::Protocol(format!("token service answered {s}"))),
    }
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let answer: Answer = response
        .json()
        .await
        .map_err(|e| TokenError::Protocol(format!("token answer: {}", error_chain(&e))))?;
    let value = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::Protocol("token answer holds no token".into()))?;
    let lifetime = answer
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .min(MAX_RETRY_AFTER);
    Ok(Token {
        value: Secret::new(value),
        usable_until: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
    })
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date, at most
/// [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
            (at - now).to_std().unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// An error and its causes on one line (reqwest's Display omits the cause).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn challenges_as_registries_send_them() {
        assert_eq!(
            parse_challenges(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            }]
        );
        assert_eq!(
            parse_challenges(r#"Basic realm="hoist-test""#),
            vec![Challenge::Basic]
        );
        // Two challenges in one header, unquoted values, odd spacing, escapes.
        assert_eq!(
            parse_challenges(r#"Basic realm="a, b" , Bearer realm=https://r.test/t , service = "s\"x""#),
            vec![
                Challenge::Basic,
                Challenge::Bearer {
                    realm: "https://r.test/t".into(),
                    service: Some("s\"x".into()),
                    scope: None
                }
            ]
        );
        // A Bearer challenge without a realm is of no use; odd input is no panic.
        for odd in [
            "Bearer",
            "Bearer service=x",
            "",
            "=",
            ",,,",
            "Bearer realm=\"unterminated",
            "Negotiate abc==",
        ] {
            let parsed = parse_challenges(odd);
            assert!(
                parsed
                    .iter()
                    .all(|c| !matches!(c, Challenge::Bearer { realm, .. } if realm.is_empty())),
                "{odd}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=x"));
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"https://t\""),
        );
        assert!(matches!(
            Challenge::from_headers(&headers),
            Some(Challenge::Bearer { .. })
        ));
    }

    proptest::proptest! {
        /// A registry's header is untrusted input: any value parses, or is skipped, without a panic.
        #[test]
        fn any_challenge_or_retry_after_is_read_without_panic(value in "[ -~]{0,80}", structured in "(Bearer|Basic|x)?( ?[a-z]{0,6}(=(\"([^\"\\\\]|\\\\.){0,8}\"?|[a-z:/.]{0,8}))?,?){0,5}") {
            for text in [&value, &structured] {
                for challenge in parse_challenges(text) {
                    if let Challenge::Bearer { realm, .. } = challenge {
                        proptest::prop_assert!(!realm.is_empty());
                    }
                }
                if let Ok(header) = HeaderValue::from_str(text) {
                    let mut headers = HeaderMap::new();
                    headers.insert(RETRY_AFTER, header);
                    if let Some(wait) = retry_after(&headers, Utc::now()) {
                        proptest::prop_assert!(wait <= MAX_RETRY_AFTER);
                    }
                }
            }
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let headers = |value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(value));
            h
        };
        assert_eq!(retry_after(&headers("7"), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:28:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers("99999999999999"), now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
