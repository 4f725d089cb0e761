//! The `hoist` binary: parse arguments, read the configuration, start
//! logging, run. Exit codes: 0 stopped cleanly, 1 start-up failure, 64 bad
//! configuration (nothing is bound before the configuration is valid).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hoist::config::{keys, Config, EnvVars};

const CONFIGURATION_HELP: &str = "\
Configuration (environment variables):
  HOIST_LISTEN             address to serve on [default: 0.0.0.0:8080]
  HOIST_WEBHOOK_TOKEN      bearer token webhooks must send (Authorization: Bearer <token>); required
  HOIST_INSECURE_NO_AUTH   true to accept webhooks without a token (not recommended)
  HOIST_REGISTRY_ALIASES   name=alias,... registry host names that are one registry,
                           e.g. registry.example.com=127.0.0.1:5000
  HOIST_STATE_DIR          where state is kept [default: /var/lib/hoist]
  HOIST_HEALTH_GRACE       without a healthcheck, how long a new container must stay up [default: 5s]
  HOIST_HEALTH_DEADLINE    how long a new container gets to be up (and healthy) [default: 60s]
  HOIST_STOP_TIMEOUT       how long the old container gets to stop [default: 10s]
  HOIST_MAX_PARALLEL       pushes of different images updated at once [default: 4]
  HOIST_QUEUE_CAPACITY     pushes waiting; past it webhooks get 503 [default: 1024]
  HOIST_MAX_BODY_BYTES     largest webhook body accepted [default: 1048576]
  HOIST_SHUTDOWN_GRACE     on SIGTERM, how long running updates get to finish [default: 60s]
  HOIST_REMOVE_OLD_IMAGES  true to remove an updated container's old image when unused [default: false]
  HOIST_LOG_FORMAT         text or json [default: text]; RUST_LOG sets the level
  HOIST_SERVICES           leader: update labelled services when this engine leads the swarm;
                           off: never [default: leader]
  HOIST_SERVICE_DEADLINE   most time a service's rolling update (or rollback) gets [default: 10m]
  HOIST_PEERS              http://host:port,... other hoists every update is forwarded to
  HOIST_PEERS_DNS          name[:port] resolved to the other hoists before each forward,
                           e.g. tasks.hoist_hoist in a stack [port: this hoist's]
  HOIST_FORWARD_ATTEMPTS   tries per peer before a forward is given up and reported [default: 5]
  HOIST_DOCKER_CONFIG      docker config.json whose registry credentials go with service updates
                           [default: $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json]
  HOIST_SLACK_WEBHOOK_URL, HOIST_TEAMS_WEBHOOK_URL, HOIST_SMTP_URL, HOIST_EMAIL_FROM, HOIST_EMAIL_TO
                           notification channels (see the README)
  DOCKER_HOST              the engine to manage [default: the local socket]

Labels on containers (and on Swarm services: deploy labels):
  hoist.enable=true               update this container or service when its image tag is pushed
  registry-docker-updater=true    the same (older name)
  hoist.monitor-only=true         only report that an update is available
  hoist.health.grace=10s          override HOIST_HEALTH_GRACE for this container
  hoist.health.deadline=2m        override HOIST_HEALTH_DEADLINE for this container
                                  (HOIST_SERVICE_DEADLINE for a service)

Endpoints:
  POST /v1/hooks/distribution     Docker Distribution (registry:2) notifications
  POST /v1/hooks/harbor           Harbor webhooks (Default and CloudEvents formats)
  POST /v1/hooks/forwarded        updates forwarded by peer hoists (X-Hoist-Forwarded: 1)
  GET  /healthz  /metrics  /v1/targets  /v1/history  /v1/peers";

/// hoist redeploys the containers that run an image tag as soon as a new
/// image is pushed to that tag, and rolls back when the new one does not come up.
#[derive(Parser)]
#[command(version, about, long_about = None, after_long_help = CONFIGURATION_HELP, after_help = "Run `hoist run --help` (or `hoist --help`) for the configuration.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the agent: serve webhooks, watch labelled containers, update them.
    #[command(after_long_help = CONFIGURATION_HELP)]
    Run,
    /// Check a running hoist's /healthz (for a container HEALTHCHECK); exit 0 when healthy.
    Healthcheck {
        /// The address hoist listens on.
        #[arg(long, env = "HOIST_LISTEN", default_value = "127.0.0.1:8080")]
        addr: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match hoist::run(config, hoist::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hoist could not start.");
            ExitCode::from(1)
        }
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
