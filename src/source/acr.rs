//! Azure Container Registry webhooks.
//!
//! The body is one event object, not an envelope, with the field names of a
//! Distribution event: `{"id", "timestamp", "action", "target": {"mediaType",
//! "digest", "repository", "tag"}, "request": {"host"}}`. ACR has no
//! signature: the webhook is given a custom header `Authorization: Bearer
//! <token>`, which the route checks.
//!
//! Choices:
//! * Actions: `push` is a push; `delete`, `chart_push`, `chart_delete`,
//!   `quarantine` and the Ping button's `ping` are not.
//! * The registry host is `request.host` (`<name>.azurecr.io`, or a
//!   geo-replica's); the event id is `id`.
//! * An untagged push (empty or absent `target.tag`) is a push by digest.
//! * A push without `target.repository` is malformed; other actions may lack
//!   a target (the ping has none).
//! * Event Grid deliveries (a JSON array, with a validation handshake) are not
//!   this route's format: the error says so.

use serde::Deserialize;

use super::{lenient_digest, non_empty, Action, ParseError, RegistryEvent};

const FORMAT: &str = "acr";

#[derive(Deserialize)]
struct Event {
    id: Option<String>,
    action: Option<String>,
    target: Option<Target>,
    request: Option<Request>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    media_type: Option<String>,
    digest: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    host: Option<String>,
}

/// Parses an ACR webhook body (one event).
pub fn parse(body: &[u8]) -> Result<Vec<RegistryEvent>, ParseError> {
    let malformed = |detail: &str| ParseError::Malformed {
        format: FORMAT,
        detail: detail.to_string(),
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(malformed(
            "a JSON array is an Event Grid delivery; point an ACR webhook (Webhooks → Add) at this route instead",
        ));
    }
    let event: Event = serde_json::from_slice(body).map_err(|e| {
        ParseError::from_json(
            FORMAT,
            "an ACR webhook event {\"action\": ..., \"target\": {...}}",
            body,
            e,
        )
    })?;
    let action = match non_empty(event.action).as_deref() {
        None => return Err(malformed("no `action`")),
        Some("push") => Action::Push,
        Some("delete") => Action::Delete,
        Some(other) => Action::Other(other.to_string()),
    };
    let target = event.target;
    let repository = target.as_ref().and_then(|t| non_empty(t.repository.clone()));
    let repository = match (repository, &action) {
        (Some(repository), _) => repository,
        (None, Action::Push) => return Err(malformed("a push without `target.repository`")),
        (None, _) => String::new(),
    };
    let (tag, digest, media_type) = match target {
        Some(target) => (
            non_empty(target.tag),
            lenient_digest(target.digest, FORMAT, &repository),
            non_empty(target.media_type),
        ),
        None => (None, None, None),
    };
    Ok(vec![RegistryEvent {
        action,
        registry_host: event
            .request
            .and_then(|request| non_empty(request.host))
            .map(|host| host.to_ascii_lowercase()),
        repository,
        tag,
        digest,
        media_type,
        event_id: non_empty(event.id),
        actor: None,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SourceKind;
    use crate::source::{fixture, Ignored};

    const DIGEST: &str = "sha256:dc1964102f0225de0e63d6673f2f2e645a35d299c1667765636b57c0bc80424c";

    fn update(body: &[u8]) -> Result<String, Ignored> {
        let event = parse(body).unwrap().remove(0);
        event
            .into_update(SourceKind::Acr, None)
            .map(|u| format!("{}@{}", u.reference, u.digest))
    }

    #[test]
    fn every_sample_is_judged() {
        let push = parse(&fixture("acr-push.json")).unwrap().remove(0);
        assert_eq!(
            push.event_id.as_deref(),
            Some("cb8c3971-9adc-488b-8a6e-43cbb4974ff5")
        );
        assert_eq!(
            update(&fixture("acr-push.json")),
            Ok(format!("exampleregistry.azurecr.io/team/app:1.4.2@{DIGEST}"))
        );
        assert_eq!(
            update(&fixture("acr-delete.json")),
            Err(Ignored::NotAPush(Action::Delete))
        );
        assert_eq!(
            update(&fixture("acr-ping.json")),
            Err(Ignored::NotAPush(Action::Other("ping".into())))
        );
        let untagged = String::from_utf8(fixture("acr-push.json"))
            .unwrap()
            .replace("\"tag\": \"1.4.2\"", "\"tag\": \"\"");
        assert_eq!(update(untagged.as_bytes()), Err(Ignored::NoTag));
        let chart = String::from_utf8(fixture("acr-push.json"))
            .unwrap()
            .replace("\"action\": \"push\"", "\"action\": \"chart_push\"");
        assert_eq!(
            update(chart.as_bytes()),
            Err(Ignored::NotAPush(Action::Other("chart_push".into())))
        );
    }

    #[test]
    fn malformed_bodies_are_errors_with_a_useful_detail() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty body"),
            (b"{}", "no `action`"),
            (
                b"{\"action\": \"push\", \"target\": {}}",
                "without `target.repository`",
            ),
            (&fixture("acr-eventgrid-imagepushed.json"), "Event Grid delivery"),
            (b"{\"action\": 3}", "expected an ACR webhook event"),
        ];
        for (body, detail) in cases {
            let error = parse(body).unwrap_err().to_string();
            assert!(
                error.contains(detail),
                "{:?}: {error}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
