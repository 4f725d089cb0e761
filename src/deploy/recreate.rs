//! The recreate spec: from the inspect of the container to replace, and of
//! its old and new images, the body that creates its successor.
//!
//! Pure: bollard's models in, bollard's model out, no engine call. What was
//! set on the container is carried over; what it only inherited from the old
//! image is left out, so that the new image's defaults apply.

use std::collections::{HashMap, HashSet};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ImageInspect, Mount, MountType,
    NetworkingConfig,
};

use crate::inventory::labels;

/// The body of a container to create, and the networks to connect before start.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    pub(in crate::deploy) body: ContainerCreateBody,
    pub(in crate::deploy) extra_networks: Vec<(String, EndpointSettings)>,
}

/// Builds the body that recreates `old` from `new_image`, carrying over what
/// was set on the container and letting the new image's defaults apply where
/// the container only inherited `old_image`'s.
pub fn spec(
    old: &ContainerInspectResponse,
    old_image: &ImageInspect,
    new_image: &ImageInspect,
    image_reference: &str,
) -> Result<CreateSpec, String> {
    let config = old.config.clone().ok_or("inspect has no Config")?;
    let mut host_config = old.host_config.clone().ok_or("inspect has no HostConfig")?;
    let image_defaults = old_image.config.clone().unwrap_or_default();
    let id = old.id.as_deref().unwrap_or_default();
    let new_image_id = new_image.id.as_deref().unwrap_or_default();

    // Run-time overrides only: whatever equals the old image's value came
    // from the image, and the new image's value should replace it.
    let env = subtract(config.env, image_defaults.env.as_ref());
    let labels = config.labels.map(|labels| {
        let inherited = image_defaults.labels.unwrap_or_default();
        labels
            .into_iter()
            .filter(|(k, v)| labels::is_opt_in(k) || inherited.get(k) != Some(v))
            .map(|(k, v)| {
                // Compose v2 recreates a container whose recorded image
                // differs from the local one; record the new image.
                if k == labels::COMPOSE_IMAGE {
                    (k, new_image_id.to_string())
                } else {
                    (k, v)
                }
            })
            .collect::<HashMap<_, _>>()
    });
    let volumes = subtract(config.volumes, image_defaults.volumes.as_ref());
    let entrypoint_inherited = config.entrypoint == image_defaults.entrypoint;
    let entrypoint = if entrypoint_inherited {
        None
    } else {
        config.entrypoint
    };
    // Cmd is only reset to the image's when the entrypoint is too: a
    // custom entrypoint makes the image's Cmd an argument the user chose.
    let cmd = if entrypoint_inherited && config.cmd == image_defaults.cmd {
        None
    } else {
        config.cmd
    };
    let keep_unless_inherited = |value: Option<String>, image: Option<&String>| match value {
        Some(v) if v.is_empty() || Some(&v) == image => None,
        other => other,
    };
    let user = keep_unless_inherited(config.user, image_defaults.user.as_ref());
    let working_dir = keep_unless_inherited(config.working_dir, image_defaults.working_dir.as_ref());
    let stop_signal = keep_unless_inherited(config.stop_signal, image_defaults.stop_signal.as_ref());
    let healthcheck = if config.healthcheck == image_defaults.healthcheck {
        None
    } else {
        config.healthcheck
    };
    let mut exposed_ports =
        subtract(config.exposed_ports, image_defaults.exposed_ports.as_ref()).unwrap_or_default();
    for port in host_config.port_bindings.iter().flat_map(|b| b.keys()) {
        if !exposed_ports.contains(port) {
            exposed_ports.push(port.clone());
        }
    }
    // The daemon sets the hostname to the short ID; keeping it would give
    // the new container the old one's ID as its name (watchtower#1251).
    let network_mode = host_config.network_mode.clone().unwrap_or_default();
    let shares_namespace = network_mode.starts_with("container:") || host_config.uts_mode.is_some();
    let hostname = config
        .hostname
        .filter(|h| !shares_namespace && !h.is_empty() && !id.starts_with(h.as_str()));

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
    let anonymous: Vec<Mount> = old
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

    // API < 1.44 takes one endpoint at create; the others are connected
    // before start. The primary one is the network the mode names.
    let mut endpoints: Vec<(String, EndpointSettings)> = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .into_iter()
        .flatten()
        .map(|(name, ep)| (name.clone(), endpoint_for_create(ep, id)))
        .collect();
    endpoints.sort_by_key(|(name, _)| name.clone());
    let takes_endpoints =
        !(network_mode == "host" || network_mode == "none" || network_mode.starts_with("container:"));
    let (primary, secondary) = if takes_endpoints {
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

    let body = ContainerCreateBody {
        hostname,
        domainname: config.domainname.filter(|d| !d.is_empty()),
        user,
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        exposed_ports: Some(exposed_ports).filter(|p| !p.is_empty()),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        env,
        cmd,
        healthcheck,
        args_escaped: None,
        image: Some(image_reference.to_string()),
        volumes,
        working_dir,
        entrypoint,
        network_disabled: config.network_disabled,
        on_build: None,
        labels,
        stop_signal,
        stop_timeout: config.stop_timeout,
        shell: None,
        host_config: Some(host_config),
        networking_config: Some(NetworkingConfig {
            endpoints_config: primary.map(|(name, ep)| HashMap::from([(name, ep)])),
        }),
    };
    Ok(CreateSpec {
        body,
        extra_networks: secondary,
    })
}

/// Keeps the user-configurable part of an endpoint; drops what the engine
/// assigns (IDs, addresses it chose) and the old container's short-ID alias.
fn endpoint_for_create(ep: &EndpointSettings, old_id: &str) -> EndpointSettings {
    let short_id = old_id.get(..12).unwrap_or_default();
    EndpointSettings {
        ipam_config: ep.ipam_config.clone(),
        links: ep.links.clone(),
        aliases: ep
            .aliases
            .clone()
            .map(|aliases| aliases.into_iter().filter(|a| a != short_id).collect::<Vec<_>>())
            .filter(|a| !a.is_empty()),
        driver_opts: ep.driver_opts.clone(),
        ..Default::default()
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
