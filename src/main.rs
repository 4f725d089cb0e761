//! The `hoist` binary: parse arguments, read the configuration, start
//! logging, run. Exit codes: 0 stopped cleanly, 1 start-up failure, 64 bad
//! configuration (nothing is bound before the configuration is valid).

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use hoist::config::{keys, Config, EnvVars};

/// Labels and routes, after the variables in `--help` (the variables come from
/// `hoist::config::variables`, the list `Config` reads).
const LABELS_AND_ROUTES_HELP: &str = "\
Labels on containers (and on Swarm services: deploy labels):
  hoist.enable=true               update this container or service when its image tag is pushed
  registry-docker-updater=true    the same (older name); so is the key
                                  `registry-docker-updater: true` with an empty value (what
                                  compose makes of the list form `- 'registry-docker-updater: true'`)
  hoist.monitor-only=true         only report that an update is available
  hoist.health.grace=10s          override HOIST_HEALTH_GRACE for this container (at most 24h)
  hoist.health.deadline=2m        override HOIST_HEALTH_DEADLINE for this container
                                  (HOIST_SERVICE_DEADLINE for a service; at most 24h)
  hoist.canary=true               a push updates and gates one of its targets first, the rest once it is healthy
  hoist.contract=block            refuse an update whose image changes exposed ports, volumes or user
                                  (outcome `blocked`; the old container keeps running)
  hoist.poll=5m|off               ask the registry for the tag's digest this often (overrides
                                  HOIST_POLL_INTERVAL; 1s to 168h); a new digest redeploys as a push would
  A label with a bad value is logged, and fails that target's next update (nothing is changed).

Endpoints:
  POST /v1/hooks/distribution       Distribution (registry:2) and GitLab registry notifications; bearer token
  POST /v1/hooks/harbor             Harbor webhooks, Default and CloudEvents formats; bearer token
  POST /v1/hooks/github             GitHub package events (ghcr.io); X-Hub-Signature-256
  POST /v1/hooks/gitea              Gitea and Forgejo package events; X-Gitea-Signature/X-Forgejo-Signature
  POST /v1/hooks/dockerhub/{token}  Docker Hub webhooks; the webhook token in the path
  POST /v1/hooks/quay/{token}       Quay repo_push notifications; the webhook token in the path
  POST /v1/hooks/acr                Azure Container Registry webhooks; bearer token (custom header)
  POST /v1/update                   a CI job: {\"image\": \"<ref>\", \"digest\": \"<optional>\"}; bearer token
  POST /v1/hooks/forwarded          updates forwarded by peer hoists (X-Hoist-Forwarded: 1)
  GET  /v1/targets  /v1/history  /v1/peers  /v1/plan?image=IMAGE   bearer token (HOIST_WEBHOOK_TOKEN)
  POST /v1/rollback                 {\"target\": \"<name>\"}; bearer token
  GET  /healthz                     open
  GET  /metrics                     open, unless HOIST_METRICS_TOKEN is set (then a bearer token)";

/// hoist redeploys the containers that run an image tag as soon as a new
/// image is pushed to that tag, and rolls back when the new one does not come up.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = "Run `hoist run --help` (or `hoist --help`) for the configuration.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the agent: serve webhooks, watch labelled containers, update them.
    Run,
    /// The targets of a running hoist, each with its image, digest and last outcome.
    Status {
        #[command(flatten)]
        remote: Remote,
    },
    /// The newest jobs of a running hoist.
    History {
        /// How many jobs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
    /// What a push of IMAGE would redeploy, and why each other container running it would not.
    Plan {
        /// The tagged image, e.g. registry.example.com/team/app:1.4
        image: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Put back the image NAME ran before its last update (a journaled, health-gated job).
    Rollback {
        /// The container's name.
        name: String,
        /// Print the queued job and return at once, without waiting for its outcome.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Check a running hoist's /healthz (for a container HEALTHCHECK); exit 0 when healthy.
    Healthcheck {
        /// The address hoist listens on.
        #[arg(long, env = "HOIST_LISTEN", default_value = "127.0.0.1:8080")]
        addr: String,
    },
    /// Internal: the short-lived relay hoist starts to update its own container.
    #[command(hide = true)]
    Relay {
        /// hoist's container.
        #[arg(long)]
        container: String,
        /// The ID of the image to update it to.
        #[arg(long)]
        image: String,
    },
}

/// Where the running hoist is, and how to talk to it.
#[derive(clap::Args)]
struct Remote {
    /// The running hoist.
    #[arg(long, env = "HOIST_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The configuration part of `--help`: every variable, then labels and routes.
fn configuration_help() -> String {
    format!(
        "{}\n{LABELS_AND_ROUTES_HELP}",
        hoist::config::variables::help_text(100)
    )
}

fn main() -> ExitCode {
    let help = configuration_help();
    let command = Cli::command()
        .after_long_help(help.clone())
        .mut_subcommand("run", |run| run.after_long_help(help));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hoist: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Run => runtime.block_on(run()),
        Command::Healthcheck { addr } => runtime.block_on(healthcheck(addr)),
        Command::Relay { container, image } => runtime.block_on(relay(container, image)),
        operator => runtime.block_on(operate(operator)),
    }
}

async fn run() -> ExitCode {
    let config = match Config::from_vars(&EnvVars) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hoist: {e}");
            return ExitCode::from(64);
        }
    };
    hoist::telemetry::init_logging(config.log_format);
    if config.webhook_token.is_none() {
        tracing::warn!(
            "{}=true: webhooks are accepted without a token.",
            keys::INSECURE_NO_AUTH
        );
    }
    if config
        .webhook_token
        .as_ref()
        .is_some_and(|token| token.expose().chars().count() < hoist::config::MIN_TOKEN_CHARS)
    {
        tracing::warn!(
            "{} is shorter than {} characters: it guards deploys and the read API; use a longer, random one (e.g. openssl rand -hex 32).",
            keys::WEBHOOK_TOKEN,
            hoist::config::MIN_TOKEN_CHARS
        );
    }
    match hoist::run(config, hoist::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hoist could not start.");
            ExitCode::from(1)
        }
    }
}

/// Updates hoist's own container from outside it (see `hoist::deploy::selfupdate`).
/// Exit code 0 when the new hoist runs, 1 otherwise (the old one is back).
async fn relay(container: String, image: String) -> ExitCode {
    let config = match Config::from_vars(&EnvVars) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hoist relay: {e}");
            return ExitCode::from(64);
        }
    };
    hoist::telemetry::init_logging(config.log_format);
    let engine =
        match hoist::engine::Engine::connect(config.docker_host.as_deref(), config.engine_timeout).await {
            Ok(engine) => engine,
            Err(e) => {
                tracing::error!(error = %e, "The relay cannot reach the engine; hoist is left as it is.");
                return ExitCode::from(1);
            }
        };
    if let Err(e) = engine.ready().await {
        tracing::error!(error = %e, "The relay cannot reach the engine; hoist is left as it is.");
        return ExitCode::from(1);
    }
    let settings = hoist::deploy::container::UpdateSettings {
        health: config.health.clone(),
        stop_timeout: config.stop_timeout,
        // Never two hoists on one journal: the old one stops before the new one starts.
        order: hoist::labels::UpdateOrder::StopFirst,
        drain: hoist::deploy::container::DEFAULT_DRAIN,
        slots: hoist::deploy::slots::Slots::new(1),
        co_targets: Default::default(),
    };
    let scratch = std::env::temp_dir().join(format!("hoist-relay-{}", std::process::id()));
    let outcome = hoist::deploy::selfupdate::relay(&engine, &container, &image, &settings, &scratch).await;
    match outcome {
        hoist::deploy::Outcome::Updated => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// A tiny HTTP GET over a plain TCP stream: the image has no curl or wget.
async fn healthcheck(addr: String) -> ExitCode {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.replace("0.0.0.0", "127.0.0.1");
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(response)) if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") => {
            ExitCode::SUCCESS
        }
        Ok(Ok(response)) => {
            eprintln!(
                "hoist: unhealthy: {}",
                response.lines().next().unwrap_or_default()
            );
            ExitCode::from(1)
        }
        Ok(Err(e)) => {
            eprintln!("hoist: cannot reach {addr}: {e}");
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("hoist: {addr} did not answer within 5s");
            ExitCode::from(1)
        }
    }
}

/// The operator subcommands: one request (or two) to a running hoist.
async fn operate(command: Command) -> ExitCode {
    use hoist::cli;
    let token = std::env::var(keys::WEBHOOK_TOKEN).ok();
    let remote = match &command {
        Command::Status { remote }
        | Command::History { remote, .. }
        | Command::Plan { remote, .. }
        | Command::Rollback { remote, .. } => remote,
        Command::Run | Command::Healthcheck { .. } | Command::Relay { .. } => return ExitCode::from(64),
    };
    let result = async {
        let client = cli::Client::new(&remote.url, token)?;
        let json = remote.json;
        let show = |value: &serde_json::Value, table: String| {
            if json {
                serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
            } else {
                table
            }
        };
        Ok::<String, cli::CliError>(match &command {
            Command::Status { .. } => {
                let targets = client.get("/v1/targets", "status").await?;
                let history = client.get("/v1/history", "status").await?;
                show(&targets, cli::render_status(&targets, &history))
            }
            Command::History { limit, .. } => {
                let mut history = client.get("/v1/history", "history").await?;
                if let Some(jobs) = history["jobs"].as_array_mut() {
                    jobs.truncate(*limit);
                }
                show(&history, cli::render_history(&history, *limit))
            }
            Command::Plan { image, .. } => {
                let plan = client.plan(image).await?;
                show(&plan, cli::render_plan(&plan))
            }
            Command::Rollback { name, no_wait, .. } => {
                let receipt = client.rollback(name).await?;
                let finished = if *no_wait {
                    None
                } else {
                    client
                        .wait_for_job(&receipt["job"], Duration::from_secs(600))
                        .await?
                };
                let value = serde_json::json!({ "queued": receipt, "job": finished });
                show(&value, cli::render_rollback(&receipt, finished.as_ref()))
            }
            Command::Run | Command::Healthcheck { .. } | Command::Relay { .. } => String::new(),
        })
    }
    .await;
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hoist: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
