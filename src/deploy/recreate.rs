//! The recreate spec: from the inspect of the container to replace, and of
//! its old and new images, the body that creates its successor.
//!
//! Pure: no engine call, so it is tested on inspect JSON captured from a real
//! engine (`tests/fixtures/inspect/`).
//!
//! Exhaustive by construction: the body starts as the old container's whole
//! `Config`, `HostConfig` and network endpoints, field for field, and only the
//! fields written down in [`RULES`] are then taken out or rewritten, each with
//! its reason. A field that bollard's models gain is therefore carried over
//! unless someone decides otherwise, and a unit test walks every field of the
//! models to check that each one is either carried over as it was or in [`RULES`].

use std::collections::{HashMap, HashSet};

use bollard::models::{ContainerCreateBody, EndpointSettings, Mount, MountType, NetworkingConfig};

use crate::engine::{ContainerDetails, CreateSpec, ImageDetails};
use crate::labels;

/// Why the spec cannot be built; nothing has been touched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The inspect lacks a part every container has.
    #[error("the inspect has no {0}")]
    Missing(&'static str),
    /// The container's configuration does not fit the create body's model.
    #[error("the configuration does not convert to a create body: {0}")]
    Model(String),
}

/// The model a field belongs to, as the engine's API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// `Config` of an inspect (bollard's `ContainerConfig`).
    Config,
    /// `HostConfig` (bollard's `HostConfig`).
    HostConfig,
    /// One network of `NetworkSettings.Networks` (bollard's `EndpointSettings`).
    Endpoint,
}

/// Why a field is not carried over exactly as the inspect shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The engine chose the value (an ID, an address); the new container gets its own.
    EngineAssigned,
    /// The engine computes it from other fields, which are carried over.
    Derived,
    /// It came from the old image: the new image's value applies instead.
    ImageDefault,
    /// Carried over, rewritten into the form the create call takes.
    Translated,
    /// The engine reports it, but the API hoist speaks has no such field.
    Unsupported,
}

/// One field that is not carried over as it was, and why.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub model: Model,
    /// The field's name in the engine's JSON (`Hostname`, `IPAddress`).
    pub field: &'static str,
    pub reason: Reason,
    /// When and how, in a sentence.
    pub detail: &'static str,
}

const fn rule(model: Model, field: &'static str, reason: Reason, detail: &'static str) -> Rule {
    Rule {
        model,
        field,
        reason,
        detail,
    }
}

/// Every field of `Config`, `HostConfig` and the network endpoints that is not
/// carried over exactly as the old container's inspect shows it. Any other
/// field is, whatever it is.
pub const RULES: &[Rule] = &[
    // === Config ===
    rule(Model::Config, "Hostname", Reason::EngineAssigned,
        "dropped when it is the old container's short ID (the engine's default), or when the UTS namespace is another's (UTSMode host, NetworkMode container:...), which then sets it; a hostname the user chose is kept"),
    rule(Model::Config, "MacAddress", Reason::Translated,
        "engines before API 1.44 keep a MAC address the user chose here only; it is set again, there and on the primary network endpoint"),
    rule(Model::Config, "Env", Reason::ImageDefault,
        "entries equal to one of the old image's are dropped; the others are kept"),
    rule(Model::Config, "Labels", Reason::ImageDefault,
        "labels equal to the old image's are dropped (opt-in labels are always kept); com.docker.compose.image is set to the new image's ID"),
    rule(Model::Config, "Volumes", Reason::ImageDefault,
        "entries the old image declares are dropped; the old container's anonymous volumes are attached by HostConfig.Mounts"),
    rule(Model::Config, "ExposedPorts", Reason::ImageDefault,
        "entries the old image exposes are dropped; ports with a binding are always kept"),
    rule(Model::Config, "Entrypoint", Reason::ImageDefault, "dropped when equal to the old image's"),
    rule(Model::Config, "Cmd", Reason::ImageDefault,
        "dropped when equal to the old image's and the entrypoint is the image's too (a custom entrypoint makes the image's Cmd an argument the user chose)"),
    rule(Model::Config, "User", Reason::ImageDefault, "dropped when empty or equal to the old image's"),
    rule(Model::Config, "WorkingDir", Reason::ImageDefault, "dropped when empty or equal to the old image's"),
    rule(Model::Config, "StopSignal", Reason::ImageDefault, "dropped when empty or equal to the old image's"),
    rule(Model::Config, "Healthcheck", Reason::ImageDefault, "dropped when equal to the old image's"),
    rule(Model::Config, "ArgsEscaped", Reason::ImageDefault, "always the image's (Windows images only)"),
    rule(Model::Config, "OnBuild", Reason::ImageDefault, "always the image's (triggers for builds FROM it)"),
    rule(Model::Config, "Shell", Reason::ImageDefault, "always the image's (the shell of its Dockerfile's RUN lines)"),
    // === HostConfig ===
    rule(Model::HostConfig, "Links", Reason::Translated,
        "inspect shows /other:/this/alias; create takes other:alias"),
    rule(Model::HostConfig, "Mounts", Reason::Translated,
        "the old container's anonymous volumes (named by neither Binds nor Mounts) are added as volume mounts, so that their data stay"),
    rule(Model::HostConfig, "KernelMemory", Reason::Unsupported,
        "deprecated by the engine and absent from API 1.42 on (bollard's models have no such field)"),
    rule(Model::HostConfig, "KernelMemoryTCP", Reason::Unsupported,
        "deprecated by the engine and absent from API 1.42 on (bollard's models have no such field)"),
    // === Network endpoints ===
    rule(Model::Endpoint, "Aliases", Reason::EngineAssigned,
        "the old container's short ID, which the engine adds, is dropped; the user's aliases are kept"),
    rule(Model::Endpoint, "MacAddress", Reason::EngineAssigned,
        "dropped unless the user chose it (Config.MacAddress)"),
    rule(Model::Endpoint, "NetworkID", Reason::Derived, "the network is named by its key"),
    rule(Model::Endpoint, "EndpointID", Reason::EngineAssigned, "the new endpoint's own"),
    rule(Model::Endpoint, "Gateway", Reason::EngineAssigned, "the network's"),
    rule(Model::Endpoint, "IPAddress", Reason::EngineAssigned,
        "an address the user chose is in IPAMConfig, which is kept"),
    rule(Model::Endpoint, "IPPrefixLen", Reason::EngineAssigned, "the network's"),
    rule(Model::Endpoint, "IPv6Gateway", Reason::EngineAssigned, "the network's"),
    rule(Model::Endpoint, "GlobalIPv6Address", Reason::EngineAssigned,
        "an address the user chose is in IPAMConfig, which is kept"),
    rule(Model::Endpoint, "GlobalIPv6PrefixLen", Reason::EngineAssigned, "the network's"),
    rule(Model::Endpoint, "DNSNames", Reason::Derived, "from the name and the aliases"),
];

/// The rule for `field` of `model`, if it is not simply carried over.
pub fn rule_for(model: Model, field: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.model == model && r.field == field)
}

/// Builds the body that recreates `old` from `new_image`: everything that
/// was set on the container, and nothing it only inherited from `old_image`
/// (so that `new_image`'s defaults apply). See [`RULES`].
pub fn spec(
    old: &ContainerDetails,
    old_image: &ImageDetails,
    new_image: &ImageDetails,
) -> Result<CreateSpec, SpecError> {
    let inspect = &old.raw;
    let config = inspect.config.clone().ok_or(SpecError::Missing("Config"))?;
    let mut host_config = inspect
        .host_config
        .clone()
        .ok_or(SpecError::Missing("HostConfig"))?;
    let image = old_image.raw.config.clone().unwrap_or_default();
    let short_id = inspect
        .id
        .as_deref()
        .unwrap_or_default()
        .get(..12)
        .unwrap_or_default();
    let network_mode = host_config.network_mode.clone().unwrap_or_default();

    // Every Config field, as it was; what follows rewrites only the fields in RULES.
    let as_json = serde_json::to_value(&config).map_err(|e| SpecError::Model(e.to_string()))?;
    let mut body: ContainerCreateBody =
        serde_json::from_value(as_json).map_err(|e| SpecError::Model(e.to_string()))?;

    // Run-time overrides only: whatever equals the old image's value came
    // from the image, and the new image's value should replace it.
    body.env = subtract(config.env, image.env.as_ref());
    body.labels = config.labels.map(|labels| {
        let inherited = image.labels.unwrap_or_default();
        labels
            .into_iter()
            .filter(|(k, v)| labels::is_opt_in(k) || inherited.get(k) != Some(v))
            .map(|(k, v)| {
                // Compose v2 recreates a container whose recorded image
                // differs from the local one; record the new image.
                if k == labels::COMPOSE_IMAGE {
                    (k, new_image.id().to_string())
                } else {
                    (k, v)
                }
            })
            .collect::<HashMap<_, _>>()
    });
    body.volumes = subtract(config.volumes, image.volumes.as_ref());
    let entrypoint_inherited = config.entrypoint == image.entrypoint;
    body.entrypoint = config.entrypoint.filter(|_| !entrypoint_inherited);
    // Cmd is only reset to the image's when the entrypoint is too: a
    // custom entrypoint makes the image's Cmd an argument the user chose.
    let cmd_inherited = entrypoint_inherited && config.cmd == image.cmd;
    body.cmd = config.cmd.filter(|_| !cmd_inherited);
    let keep_unless_inherited = |value: Option<String>, image: Option<&String>| match value {
        Some(v) if v.is_empty() || Some(&v) == image => None,
        other => other,
    };
    body.user = keep_unless_inherited(config.user, image.user.as_ref());
    body.working_dir = keep_unless_inherited(config.working_dir, image.working_dir.as_ref());
    body.stop_signal = keep_unless_inherited(config.stop_signal, image.stop_signal.as_ref());
    body.healthcheck = config
        .healthcheck
        .filter(|h| Some(h) != image.healthcheck.as_ref());
    let mut exposed_ports = subtract(config.exposed_ports, image.exposed_ports.as_ref()).unwrap_or_default();
    for port in host_config.port_bindings.iter().flat_map(|b| b.keys()) {
        if !exposed_ports.contains(port) {
            exposed_ports.push(port.clone());
        }
    }
    body.exposed_ports = Some(exposed_ports).filter(|p| !p.is_empty());
    body.args_escaped = None;
    body.on_build = None;
    body.shell = None;

    // The engine names a container after its short ID unless told otherwise,
    // and one that shares another's UTS namespace gets that one's hostname;
    // keeping either would give the new container a name that is not its own
    // (watchtower#1251), or a create the engine refuses. Inspect reports
    // UTSMode as "" when the container has its own namespace.
    let uts_mode = host_config.uts_mode.as_deref().unwrap_or_default();
    let shares_uts = network_mode.starts_with("container:") || uts_mode == "host";
    body.hostname = config
        .hostname
        .filter(|h| !shares_uts && !h.is_empty() && h != short_id);

    // Inspect reports legacy links as "/other:/this/alias"; create wants "other:alias".
    if let Some(links) = host_config.links.as_mut() {
        for link in links.iter_mut() {
            if let Some((other, alias)) = link.split_once(':') {
                let alias = alias.rsplit('/').next().unwrap_or(alias);
                *link = format!("{}:{}", other.trim_start_matches('/'), alias);
            }
        }
    }

    // Anonymous volumes are not named in Binds or Mounts; a plain recreate
    // would give the new container fresh empty ones. Attach the old ones.
    let named_destinations: HashSet<String> = host_config
        .binds
        .iter()
        .flatten()
        .filter_map(|b| b.split(':').nth(1).map(str::to_string))
        .chain(
            host_config
                .mounts
                .iter()
                .flatten()
                .filter_map(|m| m.target.clone()),
        )
        .collect();
    let anonymous: Vec<Mount> = inspect
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter(|m| {
            m.destination
                .as_ref()
                .is_some_and(|d| !named_destinations.contains(d))
        })
        .map(|m| Mount {
            target: m.destination.clone(),
            source: m.name.clone(),
            typ: Some(MountType::VOLUME),
            read_only: m.rw.map(|rw| !rw),
            ..Default::default()
        })
        .collect();
    if !anonymous.is_empty() {
        host_config.mounts.get_or_insert_with(Vec::new).extend(anonymous);
    }
    body.host_config = Some(host_config);

    // API < 1.44 takes one endpoint at create; the others are connected
    // before start. The primary one is the network the mode names.
    let mut endpoints: Vec<(String, EndpointSettings)> = inspect
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .into_iter()
        .flatten()
        .map(|(name, ep)| (name.clone(), endpoint_for_create(ep, short_id)))
        .collect();
    endpoints.sort_by_key(|(name, _)| name.clone());
    let takes_endpoints =
        !(network_mode == "host" || network_mode == "none" || network_mode.starts_with("container:"));
    let (mut primary, secondary) = if takes_endpoints {
        let primary_name = if network_mode.is_empty() || network_mode == "default" {
            "bridge".to_string()
        } else {
            network_mode.clone()
        };
        let position = endpoints.iter().position(|(name, _)| *name == primary_name);
        let primary = position.map(|i| endpoints.remove(i));
        (primary, endpoints)
    } else {
        (None, Vec::new())
    };
    // A MAC address belongs to the primary endpoint; a container without one
    // (host network, another's namespace) cannot have its own.
    let mac_address = old.config_mac_address.clone().filter(|_| primary.is_some());
    if let Some((_, endpoint)) = primary.as_mut() {
        endpoint.mac_address = mac_address.clone();
    }
    body.networking_config = Some(NetworkingConfig {
        endpoints_config: primary.map(|(name, ep)| HashMap::from([(name, ep)])),
    });

    Ok(CreateSpec {
        body,
        extra_networks: secondary,
        mac_address,
    })
}

/// The endpoint as it was, less what the engine assigned: every field is
/// kept unless [`RULES`] names it.
fn endpoint_for_create(ep: &EndpointSettings, short_id: &str) -> EndpointSettings {
    EndpointSettings {
        aliases: ep
            .aliases
            .clone()
            .map(|aliases| aliases.into_iter().filter(|a| a != short_id).collect::<Vec<_>>())
            .filter(|a| !a.is_empty()),
        mac_address: None,
        network_id: None,
        endpoint_id: None,
        gateway: None,
        ip_address: None,
        ip_prefix_len: None,
        ipv6_gateway: None,
        global_ipv6_address: None,
        global_ipv6_prefix_len: None,
        dns_names: None,
        ..ep.clone()
    }
}

fn subtract(values: Option<Vec<String>>, inherited: Option<&Vec<String>>) -> Option<Vec<String>> {
    let inherited: HashSet<&String> = inherited.into_iter().flatten().collect();
    values.map(|v| {
        v.into_iter()
            .filter(|x| !inherited.contains(x))
            .collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bollard::models::{ContainerConfig, HostConfig};
    use serde_json::{json, Value};

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/inspect/");

    fn fixture(name: &str) -> Value {
        let path = format!("{FIXTURES}{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    fn container(name: &str) -> ContainerDetails {
        ContainerDetails::from_json(fixture(name)).unwrap()
    }

    fn image(name: &str) -> ImageDetails {
        ImageDetails::from_json(fixture(name)).unwrap()
    }

    /// An image with no configuration: everything the container has is its own.
    fn bare_image() -> ImageDetails {
        ImageDetails::from_json(json!({ "Id": "sha256:bare" })).unwrap()
    }

    /// The spec as the engine's JSON: `Config` fields at the top, `HostConfig`, `NetworkingConfig`.
    fn body_json(spec: &CreateSpec) -> Value {
        serde_json::to_value(&spec.body).unwrap()
    }

    /// The container fixtures captured from a real engine (tests/fixtures/inspect/capture.sh).
    const CAPTURED: &[&str] = &[
        "full.json",
        "uts-host.json",
        "network-container.json",
        "gpus-privileged.json",
        "user-network.json",
        "plain.json",
    ];

    /// A v1 → v2 spec of a captured container (they all run image v1).
    fn captured_spec(name: &str) -> (Value, Value) {
        let spec = super::spec(&container(name), &image("image-v1.json"), &image("image-v2.json")).unwrap();
        (fixture(name), body_json(&spec))
    }

    /// The JSON names of a model's fields, straight from its serde derive: a
    /// deserializer that records the field list it is asked for, then stops.
    fn fields_of<T: serde::de::DeserializeOwned>() -> BTreeSet<&'static str> {
        struct Names(Option<&'static [&'static str]>);
        #[derive(Debug)]
        struct Stop;
        impl std::fmt::Display for Stop {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("field names recorded")
            }
        }
        impl std::error::Error for Stop {}
        impl serde::de::Error for Stop {
            fn custom<M: std::fmt::Display>(_: M) -> Stop {
                Stop
            }
        }
        impl<'de> serde::Deserializer<'de> for &mut Names {
            type Error = Stop;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
                Err(Stop)
            }
            fn deserialize_struct<V: serde::de::Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Stop> {
                self.0 = Some(fields);
                Err(Stop)
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }
        let mut names = Names(None);
        assert!(T::deserialize(&mut names).is_err());
        names
            .0
            .expect("the model derives Deserialize for a struct")
            .iter()
            .copied()
            .collect()
    }

    fn model_fields(model: Model) -> BTreeSet<&'static str> {
        match model {
            Model::Config => fields_of::<ContainerConfig>(),
            Model::HostConfig => fields_of::<HostConfig>(),
            Model::Endpoint => fields_of::<EndpointSettings>(),
        }
    }

    /// `null` members left out, as the create body's serializer leaves them out.
    fn without_nulls(value: &Value) -> Value {
        match value {
            Value::Object(members) => Value::Object(
                members
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), without_nulls(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
            other => other.clone(),
        }
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The parts of an inspect that each model describes: Config, HostConfig, every endpoint.
    fn parts(inspect: &Value) -> Vec<(Model, Value)> {
        let mut parts = vec![
            (Model::Config, inspect["Config"].clone()),
            (Model::HostConfig, inspect["HostConfig"].clone()),
        ];
        for endpoint in inspect["NetworkSettings"]["Networks"]
            .as_object()
            .into_iter()
            .flat_map(|n| n.values())
        {
            parts.push((Model::Endpoint, endpoint.clone()));
        }
        parts
    }

    #[test]
    fn the_models_are_read_field_by_field() {
        let config = fields_of::<ContainerConfig>();
        assert!(
            config.contains("Hostname") && config.contains("StopTimeout"),
            "{config:?}"
        );
        assert!(fields_of::<HostConfig>().contains("UTSMode"));
        assert!(fields_of::<EndpointSettings>().contains("IPAMConfig"));
        // Every Config field has a place in the create body.
        let body = fields_of::<ContainerCreateBody>();
        assert!(config.is_subset(&body), "{:?}", config.difference(&body));
    }

    /// The exhaustiveness check: every field of the three models is carried
    /// over exactly as it was, or written down in RULES with its reason.
    #[test]
    fn every_field_is_carried_over_or_on_the_written_list() {
        let inspect = fixture("every-field.json");
        // The sample sets every field of each model (and of nothing else but
        // the fields older engines report), so that a carried field is seen.
        for (model, part) in parts(&inspect) {
            let missing: Vec<_> = model_fields(model)
                .into_iter()
                .filter(|f| part.get(*f).is_none_or(Value::is_null))
                .collect();
            assert!(
                missing.is_empty(),
                "every-field.json sets no value for {model:?} fields {missing:?} (a new bollard field? \
                 give it a value there, then carry it over or add it to RULES with its reason)"
            );
        }
        let spec = super::spec(
            &ContainerDetails::from_json(inspect.clone()).unwrap(),
            &bare_image(),
            &bare_image(),
        )
        .unwrap();
        let body = body_json(&spec);
        let endpoint_after = &body["NetworkingConfig"]["EndpointsConfig"]["appnet"];
        let mut checked = 0;
        for (model, before) in parts(&inspect) {
            let after = match model {
                Model::Config => &body,
                Model::HostConfig => &body["HostConfig"],
                Model::Endpoint => endpoint_after,
            };
            for field in model_fields(model) {
                match rule_for(model, field) {
                    None => {
                        assert_eq!(
                            after[field], before[field],
                            "{model:?}.{field} is neither carried over as it was nor in RULES"
                        );
                        checked += 1;
                    }
                    // What the engine chose is left for the new container's engine to choose.
                    Some(rule) if matches!(rule.reason, Reason::EngineAssigned | Reason::Derived) => {
                        if !matches!(field, "Hostname" | "Aliases" | "MacAddress") {
                            assert!(
                                after[field].is_null(),
                                "{model:?}.{field} should be dropped: {rule:?}"
                            );
                        }
                    }
                    // Rewritten or image-dependent: each has its own test below.
                    Some(_) => {}
                }
            }
        }
        assert!(checked > 80, "only {checked} fields compared");
        // The fields with their own treatment, with nothing from an image to subtract.
        assert_eq!(
            body["Hostname"],
            Value::Null,
            "UTSMode host: the hostname is the host's"
        );
        assert_eq!(body["Env"], json!(["GREETING=hello"]));
        assert_eq!(body["Cmd"], json!(["serve", "--port", "9000"]));
        assert_eq!(body["HostConfig"]["Links"], json!(["side:sidealias"]));
        assert_eq!(body["HostConfig"]["Mounts"], inspect["HostConfig"]["Mounts"]);
        assert_eq!(endpoint_after["Aliases"], json!(["web"]));
        assert_eq!(endpoint_after["MacAddress"], "02:42:0a:00:00:63");
        assert_eq!(spec.mac_address.as_deref(), Some("02:42:0a:00:00:63"));
        for field in ["ArgsEscaped", "OnBuild", "Shell"] {
            assert!(body[field].is_null(), "{field} is always the image's");
        }
    }

    /// Every field a real engine reports is one the models know, or in RULES
    /// (fields of older API versions that bollard's models no longer have).
    #[test]
    fn every_field_the_engine_reports_is_known() {
        for name in CAPTURED.iter().chain(&["every-field.json"]) {
            for (model, part) in parts(&fixture(name)) {
                let known = model_fields(model);
                for key in keys(&part) {
                    assert!(
                        known.contains(key.as_str()) || rule_for(model, &key).is_some(),
                        "{name}: {model:?}.{key} is in no model and not in RULES"
                    );
                }
            }
        }
    }

    #[test]
    fn every_rule_names_a_field() {
        let reported: Vec<(Model, String)> = CAPTURED
            .iter()
            .flat_map(|name| parts(&fixture(name)))
            .flat_map(|(model, part)| keys(&part).into_iter().map(move |k| (model, k)))
            .collect();
        for rule in RULES {
            assert!(
                model_fields(rule.model).contains(rule.field)
                    || reported.iter().any(|(m, k)| *m == rule.model && k == rule.field),
                "RULES names {:?}.{}, which no model has and no engine reports",
                rule.model,
                rule.field
            );
            assert_eq!(
                RULES
                    .iter()
                    .filter(|r| r.model == rule.model && r.field == rule.field)
                    .count(),
                1,
                "{rule:?} is written twice"
            );
        }
    }

    /// The settings issue 15 names, each set on a captured container, each
    /// carried over exactly as the engine reported it.
    #[test]
    fn every_named_setting_survives_a_recreate() {
        let settings: &[(&str, Model, &str)] = &[
            ("full.json", Model::Config, "Domainname"),
            ("full.json", Model::Config, "StopTimeout"),
            ("full.json", Model::HostConfig, "ExtraHosts"),
            ("full.json", Model::HostConfig, "Dns"),
            ("full.json", Model::HostConfig, "DnsOptions"),
            ("full.json", Model::HostConfig, "DnsSearch"),
            ("full.json", Model::HostConfig, "Tmpfs"),
            ("full.json", Model::HostConfig, "Sysctls"),
            ("full.json", Model::HostConfig, "Ulimits"),
            ("full.json", Model::HostConfig, "SecurityOpt"),
            ("full.json", Model::HostConfig, "ShmSize"),
            ("full.json", Model::HostConfig, "Init"),
            ("full.json", Model::HostConfig, "PidMode"),
            ("full.json", Model::HostConfig, "IpcMode"),
            ("full.json", Model::HostConfig, "GroupAdd"),
            ("full.json", Model::HostConfig, "ReadonlyRootfs"),
            ("full.json", Model::HostConfig, "Runtime"),
            ("full.json", Model::HostConfig, "CgroupParent"),
            ("full.json", Model::HostConfig, "OomScoreAdj"),
            ("full.json", Model::HostConfig, "CapAdd"),
            ("full.json", Model::HostConfig, "CapDrop"),
            ("full.json", Model::HostConfig, "VolumesFrom"),
            ("full.json", Model::HostConfig, "LogConfig"),
            ("full.json", Model::HostConfig, "PidsLimit"),
            ("full.json", Model::HostConfig, "CpusetCpus"),
            ("full.json", Model::HostConfig, "Memory"),
            ("full.json", Model::HostConfig, "OomKillDisable"),
            ("full.json", Model::HostConfig, "Devices"),
            ("full.json", Model::HostConfig, "DeviceCgroupRules"),
            ("full.json", Model::HostConfig, "PortBindings"),
            ("full.json", Model::HostConfig, "RestartPolicy"),
            ("full.json", Model::HostConfig, "Binds"),
            ("uts-host.json", Model::HostConfig, "UTSMode"),
            ("network-container.json", Model::HostConfig, "NetworkMode"),
            ("gpus-privileged.json", Model::HostConfig, "DeviceRequests"),
            ("gpus-privileged.json", Model::HostConfig, "Privileged"),
            ("user-network.json", Model::HostConfig, "NetworkMode"),
        ];
        for (name, model, field) in settings {
            let (inspect, body) = captured_spec(name);
            let (before, after) = match model {
                Model::Config => (&inspect["Config"][field], &body[field]),
                _ => (&inspect["HostConfig"][field], &body["HostConfig"][field]),
            };
            let unset = [
                json!(null),
                json!(""),
                json!(0),
                json!(false),
                json!([]),
                json!({}),
            ];
            assert!(!unset.contains(before), "{name} does not set {field}: {before}");
            assert_eq!(
                without_nulls(after),
                without_nulls(before),
                "{name}: {model:?}.{field}"
            );
        }
    }

    /// Issue 15, case 2: `--hostname myhost` became the new container's short
    /// ID, because inspect reports UTSMode "" and any value there was taken
    /// for a shared namespace.
    #[test]
    fn a_hostname_the_user_chose_is_kept_though_inspect_reports_an_empty_uts_mode() {
        let (inspect, body) = captured_spec("full.json");
        assert_eq!(inspect["HostConfig"]["UTSMode"], "");
        assert_eq!(inspect["Config"]["Hostname"], "myhost");
        assert_eq!(body["Hostname"], "myhost");
        assert_eq!(body["Domainname"], "example.test");
    }

    #[test]
    fn a_hostname_the_engine_chose_or_a_shared_namespace_sets_is_dropped() {
        // The engine's default: the short ID.
        let (inspect, body) = captured_spec("plain.json");
        let short_id = &inspect["Id"].as_str().unwrap()[..12];
        assert_eq!(inspect["Config"]["Hostname"], short_id);
        assert!(body["Hostname"].is_null());
        // --uts host: the host's name; --network container:x: x's name.
        for name in ["uts-host.json", "network-container.json"] {
            let (inspect, body) = captured_spec(name);
            assert!(!inspect["Config"]["Hostname"].as_str().unwrap().is_empty());
            assert!(body["Hostname"].is_null(), "{name}");
        }
        let (inspect, body) = captured_spec("network-container.json");
        assert_eq!(
            inspect["Config"]["Hostname"], "myhost",
            "the namespace owner's name"
        );
        assert!(body["NetworkingConfig"]["EndpointsConfig"].is_null());
        // A hostname that happens to begin the ID is still the user's.
        let mut inspect = fixture("plain.json");
        let first = inspect["Id"].as_str().unwrap()[..1].to_string();
        inspect["Config"]["Hostname"] = json!(first);
        let spec = super::spec(
            &ContainerDetails::from_json(inspect).unwrap(),
            &image("image-v1.json"),
            &image("image-v2.json"),
        )
        .unwrap();
        assert_eq!(body_json(&spec)["Hostname"], json!(first));
    }

    #[test]
    fn a_mac_address_the_user_set_is_kept_and_the_engines_are_not() {
        let (inspect, body) = captured_spec("user-network.json");
        let network = inspect["HostConfig"]["NetworkMode"].as_str().unwrap().to_string();
        let endpoint = &body["NetworkingConfig"]["EndpointsConfig"][&network];
        assert_eq!(inspect["Config"]["MacAddress"], "02:42:0a:fa:4d:63");
        assert_eq!(endpoint["MacAddress"], "02:42:0a:fa:4d:63");
        let spec = super::spec(
            &container("user-network.json"),
            &image("image-v1.json"),
            &image("image-v2.json"),
        )
        .unwrap();
        assert_eq!(spec.mac_address.as_deref(), Some("02:42:0a:fa:4d:63"));
        // The static address, the aliases (less the short ID) and the link stay;
        // what the engine assigned goes.
        assert_eq!(endpoint["IPAMConfig"]["IPv4Address"], "10.250.77.99");
        assert_eq!(endpoint["Aliases"], json!(["web", "shop-web"]));
        assert_eq!(
            endpoint["Links"],
            inspect["NetworkSettings"]["Networks"][&network]["Links"]
        );
        for field in ["IPAddress", "Gateway", "EndpointID", "NetworkID", "IPPrefixLen"] {
            assert!(endpoint[field].is_null(), "{field}");
        }
        // Without Config.MacAddress, the endpoint's is the engine's.
        for name in ["full.json", "plain.json"] {
            let spec =
                super::spec(&container(name), &image("image-v1.json"), &image("image-v2.json")).unwrap();
            assert_eq!(spec.mac_address, None);
            assert!(
                body_json(&spec)["NetworkingConfig"]["EndpointsConfig"]["bridge"]["MacAddress"].is_null()
            );
        }
    }

    #[test]
    fn legacy_links_are_written_as_create_takes_them() {
        let (inspect, body) = captured_spec("full.json");
        let link = inspect["HostConfig"]["Links"][0].as_str().unwrap();
        let side = link.split(':').next().unwrap().trim_start_matches('/');
        assert_eq!(body["HostConfig"]["Links"], json!([format!("{side}:sidealias")]));
    }

    #[test]
    fn image_defaults_are_left_to_the_new_image_and_overrides_kept() {
        let (inspect, body) = captured_spec("full.json");
        assert_eq!(body["Env"], json!(["GREETING=hello"]));
        let labels = body["Labels"].as_object().unwrap();
        assert_eq!(labels["team"], "payments");
        assert!(!labels.contains_key("org.opencontainers.image.version"));
        // A custom entrypoint and command are kept; the image's volume is the image's.
        assert_eq!(body["Entrypoint"], inspect["Config"]["Entrypoint"]);
        assert_eq!(body["Cmd"], inspect["Config"]["Cmd"]);
        assert!(body["Volumes"].as_object().is_none_or(|v| v.is_empty()));
        // 9000 was exposed by the user, 8080 (the image's) is kept for its binding.
        let mut ports: Vec<&str> = body["ExposedPorts"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        ports.sort();
        assert_eq!(ports, ["8080/tcp", "9000/tcp"]);
        // The user's healthcheck, stop signal, workdir and user differ from the image's.
        for field in ["Healthcheck", "StopSignal", "WorkingDir", "User"] {
            assert_eq!(body[field], inspect["Config"][field], "{field}");
        }
        // A container that set nothing gets the new image's everything.
        let (_, body) = captured_spec("plain.json");
        for field in [
            "Cmd",
            "Entrypoint",
            "Healthcheck",
            "StopSignal",
            "WorkingDir",
            "User",
        ] {
            assert!(body[field].is_null(), "{field}: {}", body[field]);
        }
        assert_eq!(body["Env"], json!([]));
    }

    #[test]
    fn anonymous_volumes_are_attached_by_name() {
        let (inspect, body) = captured_spec("plain.json");
        let anonymous = inspect["Mounts"][0]["Name"].as_str().unwrap();
        assert_eq!(
            body["HostConfig"]["Mounts"],
            json!([{ "Target": "/data", "Source": anonymous, "Type": "volume", "ReadOnly": false }])
        );
        // Named volumes and tmpfs mounts are in Binds and Mounts already, as they were.
        let (inspect, body) = captured_spec("full.json");
        assert_eq!(body["HostConfig"]["Binds"], inspect["HostConfig"]["Binds"]);
        let mounts = body["HostConfig"]["Mounts"].as_array().unwrap();
        assert_eq!(mounts[0], inspect["HostConfig"]["Mounts"][0]);
        assert_eq!(mounts.len(), 2, "{mounts:?}");
    }

    #[test]
    fn the_primary_network_is_created_with_the_container_and_the_rest_connected() {
        let mut inspect = fixture("user-network.json");
        let mut second = inspect["NetworkSettings"]["Networks"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone();
        second["Aliases"] = json!(["other-alias"]);
        inspect["NetworkSettings"]["Networks"]["aaa-second"] = second;
        let spec = super::spec(
            &ContainerDetails::from_json(inspect.clone()).unwrap(),
            &image("image-v1.json"),
            &image("image-v2.json"),
        )
        .unwrap();
        let primary = inspect["HostConfig"]["NetworkMode"].as_str().unwrap();
        let body = body_json(&spec);
        assert_eq!(
            keys(&body["NetworkingConfig"]["EndpointsConfig"]),
            [primary.to_string()].into()
        );
        assert_eq!(spec.extra_networks.len(), 1);
        assert_eq!(spec.extra_networks[0].0, "aaa-second");
        assert_eq!(
            spec.extra_networks[0].1.aliases,
            Some(vec!["other-alias".to_string()])
        );
        // The MAC address is the primary endpoint's only.
        assert_eq!(spec.extra_networks[0].1.mac_address, None);
    }

    #[test]
    fn compose_v2_records_the_new_image() {
        let mut inspect = fixture("plain.json");
        inspect["Config"]["Labels"] = json!({ "com.docker.compose.image": "sha256:old" });
        let new_image = image("image-v2.json");
        let spec = super::spec(
            &ContainerDetails::from_json(inspect).unwrap(),
            &image("image-v1.json"),
            &new_image,
        )
        .unwrap();
        assert_eq!(
            body_json(&spec)["Labels"]["com.docker.compose.image"],
            json!(new_image.id())
        );
    }

    #[test]
    fn an_inspect_without_its_parts_is_an_error_not_a_panic() {
        for broken in [json!({ "Id": "x" }), json!({ "Id": "x", "Config": {} })] {
            let old = ContainerDetails::from_json(broken).unwrap();
            assert!(matches!(
                super::spec(&old, &bare_image(), &bare_image()),
                Err(SpecError::Missing(_))
            ));
        }
        assert!(ContainerDetails::from_json(json!({ "Config": "not an object" })).is_err());
    }
}
