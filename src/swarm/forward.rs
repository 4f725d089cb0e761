//! Fan-out: every update a registry sends to one hoist reaches every hoist.
//!
//! In a swarm the registry calls one address and the routing mesh hands the
//! request to one node. That hoist queues the update for itself and passes it
//! on to its peers:
//!
//! ```text
//! POST <peer>/v1/hooks/forwarded
//! Authorization: Bearer <HOIST_WEBHOOK_TOKEN>
//! X-Hoist-Forwarded: 1
//! Content-Type: application/json
//!
//! {"origin": "<sender's instance id>",
//!  "events": [{"reference": "registry:5000/team/app:1.4", "digest": "sha256:...",
//!              "source": "distribution", "delivery_id": "...", "actor": "ci",
//!              "received_at": "2026-11-23T13:20:50Z"}]}
//! ```
//!
//! The body is the normalised [`ImageEvent`], not the registry's payload, so
//! a peer needs no parser and a Harbor push forwards like a Distribution one.
//! The delivery id travels along, so a peer that hears of a push twice (a
//! registry retry that the mesh sent to another node) runs it once.
//!
//! Events that arrive on this route go to the local runner only: they are
//! never forwarded again. An event whose origin is this very hoist (it is in
//! its own peer list, as with `tasks.<service>`) is acknowledged and dropped.
//! A peer that does not answer, or answers 5xx, is tried again with backoff
//! ([`SwarmConfig::forward_attempts`](super::SwarmConfig) times); a peer that
//! is given up on is logged as an error and counted (`hoist_forwards_total{outcome="failed"}`),
//! and `GET /v1/peers` shows each peer's last result.
//!
//! This file holds what both sides share (the wire format, the counters);
//! [`client`] sends forwards (and tees the intake queue into them), [`route`]
//! receives them through the one intake path ([`crate::intake`]).

pub mod client;
pub mod route;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Digest, ImageEvent, ImageRef, SourceKind};
pub use client::{run, Forwarder};
pub use route::{router, ForwardState};

/// The header that marks a request as forwarded by a peer.
pub const FORWARDED_HEADER: &str = "x-hoist-forwarded";
/// The route peers post to.
pub const ROUTE: &str = "/v1/hooks/forwarded";

/// One update as it travels between hoists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    pub reference: String,
    pub digest: String,
    pub source: String,
    pub delivery_id: Option<String>,
    pub actor: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl From<&ImageEvent> for WireEvent {
    fn from(event: &ImageEvent) -> Self {
        WireEvent {
            reference: event.reference.to_string(),
            digest: event.digest.to_string(),
            source: event.source.as_str().to_string(),
            delivery_id: event.delivery_id.clone(),
            actor: event.actor.clone(),
            received_at: event.received_at,
        }
    }
}

impl WireEvent {
    /// Back to an event, checked as strictly as one from a registry.
    pub fn into_event(self) -> Result<ImageEvent, String> {
        let reference = ImageRef::parse(&self.reference).map_err(|e| e.to_string())?;
        if reference.tag().is_none() || reference.digest().is_some() {
            return Err(format!("{}: expected repository:tag", self.reference));
        }
        let digest = Digest::parse(&self.digest).map_err(|e| e.to_string())?;
        let source =
            SourceKind::from_name(&self.source).ok_or_else(|| format!("unknown source {:?}", self.source))?;
        Ok(ImageEvent {
            reference,
            digest,
            source,
            delivery_id: self.delivery_id,
            actor: self.actor,
            received_at: self.received_at,
        })
    }
}

/// The body of a forward.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Forwarded {
    /// The instance id of the hoist that received the events from the registry.
    pub origin: String,
    pub events: Vec<WireEvent>,
}

/// A random id for this hoist process, so that it recognises its own forwards.
pub fn new_instance_id() -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{random:016x}")
}

/// What `GET /v1/peers` shows of one peer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerStatus {
    /// Updates this peer accepted.
    pub delivered: u64,
    /// Updates given up on after every attempt.
    pub failed: u64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// The forwarding counters, shared by the sender and the route. A std mutex is
/// right: it is held to bump a counter or copy the map, never across `.await`.
#[derive(Default)]
struct Stats {
    peers: BTreeMap<String, PeerStatus>,
    /// Forwarded updates this hoist accepted from peers.
    received: u64,
    /// Forwards of its own that came back to this hoist and were dropped.
    own_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_the_wire() {
        let original = ImageEvent {
            reference: ImageRef::parse("registry.test:5000/team/web:1.4").unwrap(),
            digest: Digest::parse("sha256:2222222222222222222222222222222222222222222222222222222222222222")
                .unwrap(),
            source: SourceKind::Harbor,
            delivery_id: Some("delivery-1".into()),
            actor: Some("ci".into()),
            received_at: Utc::now(),
        };
        let text = serde_json::to_string(&WireEvent::from(&original)).unwrap();
        let back: WireEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back.into_event().unwrap(), original);
    }
}
