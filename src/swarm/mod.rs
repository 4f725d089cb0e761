//! Running hoist on every node of a Docker Swarm (a `mode: global` service).
//!
//! Three things change when hoist runs once per node instead of once per host:
//!
//! - **Who updates services.** Every manager can list and update services, so
//!   only the hoist whose engine is the raft *leader* does ([`crate::deploy::service::acts_on_services`],
//!   asked at the start of each job). Workers and the other managers update
//!   their own standalone containers only. `deploy::service` never sends an
//!   update twice (a service already pinned to the pushed digest is followed or
//!   `AlreadyCurrent`), and [`adopt`] makes a new leader follow, to its end and
//!   into the history and notifications, an update its predecessor started.
//! - **Which targets are known.** [`crate::inventory::services`] adds labelled services to the
//!   target index on managers, from `type=service` engine events.
//! - **Who hears about a push.** The registry calls one address; the routing
//!   mesh hands the request to one node's hoist. [`forward`] passes each update
//!   on to the other hoists (a static list or Swarm's `tasks.<service>` DNS
//!   name), authenticated with the webhook token and marked as forwarded, so
//!   that every node updates its own containers; a forwarded event is never
//!   forwarded again.

pub mod adopt;
pub mod forward;

use std::fmt;
use std::time::Duration;

use url::Url;

use crate::deploy::service::ServicesMode;
use crate::settings::Reader;

/// Names of the variables read here.
pub mod keys {
    pub const SERVICES: &str = "HOIST_SERVICES";
    pub const SERVICE_DEADLINE: &str = "HOIST_SERVICE_DEADLINE";
    pub const PEERS: &str = "HOIST_PEERS";
    pub const PEERS_DNS: &str = "HOIST_PEERS_DNS";
    pub const FORWARD_ATTEMPTS: &str = "HOIST_FORWARD_ATTEMPTS";
}

/// Where the other hoists of the swarm are found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers {
    /// `HOIST_PEERS`: base URLs, `http://host:port`.
    pub urls: Vec<Url>,
    /// `HOIST_PEERS_DNS`: a name resolved before every forward to one address
    /// per peer (`tasks.<service>` in Swarm), and the port they listen on.
    pub dns: Option<(String, u16)>,
}

impl Peers {
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty() && self.dns.is_none()
    }
}

impl fmt::Display for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.urls.iter().map(|u| u.to_string()).collect();
        if let Some((name, port)) = &self.dns {
            parts.push(format!("dns:{name}:{port}"));
        }
        f.write_str(&parts.join(","))
    }
}

/// The Swarm part of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwarmConfig {
    /// `HOIST_SERVICES`: `leader` (default) or `off`.
    pub services: ServicesMode,
    /// `HOIST_SERVICE_DEADLINE`: the most time a service's rolling update (or
    /// rollback) gets before hoist reports it as failed and leaves it to Swarm.
    pub service_deadline: Duration,
    /// `HOIST_PEERS` and `HOIST_PEERS_DNS`: where updates are forwarded.
    pub peers: Peers,
    /// `HOIST_FORWARD_ATTEMPTS`: tries per peer and update before giving up.
    pub forward_attempts: u32,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            services: ServicesMode::Leader,
            service_deadline: Duration::from_secs(600),
            peers: Peers::default(),
            forward_attempts: 5,
        }
    }
}

impl SwarmConfig {
    /// Reads the keys above; `listen_port` is the peers' port when
    /// `HOIST_PEERS_DNS` names none (every node runs hoist alike).
    pub fn from_reader(r: &mut Reader<'_>, listen_port: u16) -> SwarmConfig {
        let defaults = SwarmConfig::default();
        let services = r.parsed(keys::SERVICES, defaults.services);
        let service_deadline = r.duration(keys::SERVICE_DEADLINE, defaults.service_deadline);
        let forward_attempts = r.parsed(keys::FORWARD_ATTEMPTS, defaults.forward_attempts);
        if forward_attempts == 0 {
            r.problem(
                keys::FORWARD_ATTEMPTS,
                Some("0".into()),
                "must be at least 1".into(),
            );
        }
        let mut urls = Vec::new();
        if let Some(text) = r.string(keys::PEERS) {
            for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                match Url::parse(entry) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                        urls.push(url)
                    }
                    _ => r.problem(
                        keys::PEERS,
                        Some(text.clone()),
                        format!("{entry:?} is not a base URL such as http://10.0.0.5:8080"),
                    ),
                }
            }
        }
        let dns = r.string(keys::PEERS_DNS).and_then(|text| {
            let (name, port) = match text.rsplit_once(':') {
                Some((name, port)) => match port.parse::<u16>() {
                    Ok(port) => (name.to_string(), port),
                    Err(_) => {
                        r.problem(
                            keys::PEERS_DNS,
                            Some(text.clone()),
                            "expected name or name:port".into(),
                        );
                        return None;
                    }
                },
                None => (text.clone(), listen_port),
            };
            Some((name, port))
        });
        SwarmConfig {
            services,
            service_deadline,
            peers: Peers { urls, dns },
            forward_attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&'static str, &str)]) -> (SwarmConfig, Vec<String>) {
        let vars: HashMap<&str, String> = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let mut r = Reader::new(&vars);
        let config = SwarmConfig::from_reader(&mut r, 8080);
        (config, r.problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn peers_from_a_list_and_a_dns_name() {
        let (config, problems) = read(&[
            (keys::PEERS, "http://10.0.0.5:8080, http://10.0.0.6:9000/"),
            (keys::PEERS_DNS, "tasks.hoist_hoist"),
            (keys::SERVICES, "off"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.peers.urls.len(), 2);
        assert_eq!(config.peers.dns, Some(("tasks.hoist_hoist".into(), 8080)));
        assert_eq!(config.services, ServicesMode::Off);
        let (config, _) = read(&[(keys::PEERS_DNS, "tasks.hoist:9090")]);
        assert_eq!(config.peers.dns, Some(("tasks.hoist".into(), 9090)));
    }

    #[test]
    fn bad_values_name_their_key() {
        let (_, problems) = read(&[
            (keys::PEERS, "10.0.0.5:8080"),
            (keys::SERVICES, "all"),
            (keys::FORWARD_ATTEMPTS, "0"),
        ]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with(keys::PEERS)));
        assert!(problems.iter().any(|p| p.starts_with(keys::SERVICES)));
    }
}
