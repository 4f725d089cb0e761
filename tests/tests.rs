//! The integration suite: one binary (`cargo test --test integration`), on
//! the real engine, the real Distribution registry and a real SMTP server.
//! Only Slack and Teams, which cannot run here, are loopback recorders.

/// Test servers and fixtures: registry, images, hoist in-process, recorders, SMTP.
mod harness;

/// Base images: a moved base asks the rebuild hook once per app image; containers untouched.
mod base;
/// The binary itself: `--help` lists every variable; logs in a file are plain.
mod binary;
/// 5,000 events at full speed: nothing lost, last digest wins, at most one update per digest.
mod burst;
/// The operator CLI (plan, status, history, rollback) against a running hoist.
mod cli;
/// A push redeploys labelled containers; configuration preserved; rollback; outages.
mod container;
/// What a new image changes, in every message and the history; hoist.contract=block.
mod contract;
/// A private engine killed mid-update (park, create, health gate, pull), hoist
/// restarted while it is down, a stalled engine, a full state dir.
mod engine_faults;
/// The layering of src/: each module uses only modules declared before it in lib.rs (no cycles).
mod layout;
/// Labels are input: absurd values fail their own target only; the seed tool's compose label opts in.
mod labels;
/// Slack and Teams payloads on a recorder, email through real SMTP, faults, secrets.
mod notify;
/// The operator's surface: the read API behind the token, plan, rollback, quiet notifications.
mod operator;
/// Polling a registry that wants a login and sends no notifications.
mod poll;
/// HOIST_PULL_TIMEOUT bounds a pull whose registry stalls mid-layer; nothing is touched.
mod pull;
/// The bounded job queue (503 when full, nothing lost) and per-tag state that does not grow.
mod queue;
/// Crash injection: hoist SIGKILLed at each step of an update, then restarted.
mod recovery;
/// Every setting kept: the whole inspect before and after an update, field by field; exact names.
mod recreate;
/// Registries that want a login: pulls with credentials, refusals, the registry client (Basic, Bearer, 429).
mod registry;
/// Least privilege: hoist through an allow-list HAProxy (compose/socket-proxy.cfg); a push still redeploys.
mod socket_proxy;
/// The order of a push's updates: dependents follow their target, replicas roll, a canary goes first.
mod rollout;
/// hoist labelled for updates updates itself through a relay, and survives a bad image of itself.
mod selfupdate;
/// The compose example with hoist packaged FROM scratch as the sidecar.
mod sidecar;
/// Every source end to end: a realistic payload redeploys the labelled container.
mod sources;
/// Update orders: create before stop, start-first behind an alias (no failed
/// request, fall-back with published ports), health gates that hold no slot.
mod strategies;
/// Swarm: pinned service updates, Swarm rollback, leader-only updates, fan-out.
mod swarm;
/// Intake over HTTP: fixtures, auth, malformed and oversized bodies.
mod webhook;
