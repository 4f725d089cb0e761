//! The operator CLI: `hoist status`, `hoist history`, `hoist plan IMAGE`,
//! `hoist rollback NAME`, talking to a running hoist at `HOIST_URL` with
//! `HOIST_WEBHOOK_TOKEN`. Each prints a table, or the API's JSON with
//! `--json`; a hoist that cannot be reached, or refuses the token, is a
//! clear message and a non-zero exit.

use std::time::Duration;

use serde_json::{json, Value};

/// Exit code when hoist cannot be reached, or answers with an error.
pub const EXIT_UNREACHABLE: u8 = 69;
/// Exit code when hoist refuses the token.
pub const EXIT_REFUSED: u8 = 77;
/// Exit code when hoist refuses the request itself (unknown target, bad image).
pub const EXIT_REQUEST: u8 = 1;

/// What went wrong, with the exit code it ends with.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

/// A client of one running hoist.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(url: &str, token: Option<String>) -> Result<Client, CliError> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CliError {
                code: EXIT_UNREACHABLE,
                message: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Client {
            base: url.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value, CliError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| CliError {
            code: EXIT_UNREACHABLE,
            message: format!(
                "cannot reach hoist at {} ({}); is it running? HOIST_URL names where",
                self.base,
                root_cause(&e)
            ),
        })?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200..=299 => Ok(body),
            401 => Err(CliError {
                code: EXIT_REFUSED,
                message: format!(
                    "hoist at {} refused the token: set HOIST_WEBHOOK_TOKEN to the token it runs with",
                    self.base
                ),
            }),
            _ => Err(CliError {
                code: if status >= 500 {
                    EXIT_UNREACHABLE
                } else {
                    EXIT_REQUEST
                },
                message: format!(
                    "{what}: hoist answered {status}: {}",
                    body["error"].as_str().unwrap_or("no reason given")
                ),
            }),
        }
    }

    pub async fn get(&self, path: &str, what: &str) -> Result<Value, CliError> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.call(request, what).await
    }

    pub async fn plan(&self, image: &str) -> Result<Value, CliError> {
        let image: String = url::form_urlencoded::byte_serialize(image.as_bytes()).collect();
        let request = self.http.get(format!("{}/v1/plan?image={image}", self.base));
        self.call(request, "plan").await
    }

    pub async fn rollback(&self, target: &str) -> Result<Value, CliError> {
        let request = self
            .http
            .post(format!("{}/v1/rollback", self.base))
            .json(&json!({ "target": target }));
        self.call(request, "rollback").await
    }

    /// Waits for job `id` to be in the history; `None` after `within`.
    pub async fn wait_for_job(&self, id: &Value, within: Duration) -> Result<Option<Value>, CliError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let history = self.get("/v1/history", "history").await?;
            if let Some(job) = jobs(&history).into_iter().find(|j| &j["id"] == id) {
                return Ok(Some(job));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The innermost error's words ("Connection refused (os error 111)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

fn jobs(history: &Value) -> Vec<Value> {
    history["jobs"].as_array().cloned().unwrap_or_default()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `sha256:0123456789ab` of a digest or image ID.
fn short(digest: &str) -> String {
    digest.chars().take("sha256:".len() + 12).collect()
}

/// Left-aligned columns, two spaces apart, a header first.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One target's outcome as a word: `updated`, `rolled_back: health check failed`...
fn outcome_words(outcome: &Value) -> String {
    let result = text(&outcome["result"]);
    match outcome["reason"].as_str() {
        Some(reason) => format!("{result}: {reason}"),
        None => result,
    }
}

/// `hoist status`: each target with its image, digest (or image ID) and last outcome.
pub fn render_status(targets: &Value, history: &Value) -> String {
    let jobs = jobs(history);
    let mut rows = Vec::new();
    let mut list = targets["targets"].as_array().cloned().unwrap_or_default();
    list.sort_by_key(|t| text(&t["name"]));
    for target in &list {
        let name = text(&target["name"]);
        // The newest job that names the target (the history is newest first).
        let last = jobs.iter().find_map(|job| {
            job["targets"]
                .as_array()?
                .iter()
                .find(|t| t["name"] == target["name"])
                .map(|t| (job.clone(), t.clone()))
        });
        let (digest, outcome, when) = match &last {
            Some((job, t)) => (
                short(&text(&job["new_digest"])),
                outcome_words(&t["outcome"]),
                text(&job["finished_at"])
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .replace('T', " "),
            ),
            None => (short(&text(&target["image_id"])), "-".into(), "-".into()),
        };
        let mut kind = text(&target["kind"]);
        if target["monitor_only"] == true {
            kind.push_str(" (monitor-only)");
        }
        rows.push(vec![name, kind, text(&target["image"]), digest, outcome, when]);
    }
    if rows.is_empty() {
        return "No targets: no container or service is labelled hoist.enable=true.\n".into();
    }
    table(
        &["NAME", "KIND", "IMAGE", "DIGEST", "LAST OUTCOME", "AT (UTC)"],
        &rows,
    )
}

/// `hoist history`: the newest `limit` jobs.
pub fn render_history(history: &Value, limit: usize) -> String {
    let rows: Vec<Vec<String>> = jobs(history)
        .iter()
        .take(limit)
        .map(|job| {
            let targets = job["targets"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .map(|t| format!("{}={}", text(&t["name"]), text(&t["outcome"]["result"])))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            vec![
                text(&job["id"]),
                text(&job["finished_at"])
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .replace('T', " "),
                text(&job["source"]),
                text(&job["image"]),
                short(&text(&job["new_digest"])),
                if targets.is_empty() {
                    text(&job["state"])
                } else {
                    targets
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        return "No jobs in the history yet.\n".into();
    }
    table(
        &["JOB", "FINISHED (UTC)", "SOURCE", "IMAGE", "DIGEST", "TARGETS"],
        &rows,
    )
}

/// `hoist plan IMAGE`: what would be redeployed, and why not the rest.
pub fn render_plan(plan: &Value) -> String {
    let mut out = String::new();
    let image = text(&plan["image"]);
    let entries = |key: &str| plan[key].as_array().cloned().unwrap_or_default();
    let redeploy = entries("redeploy");
    let skipped = entries("skipped");
    if redeploy.is_empty() {
        out.push_str(&format!("A push of {image} would redeploy nothing."));
        out.push('\n');
    } else {
        out.push_str(&format!("A push of {image} would redeploy:"));
        out.push('\n');
        let rows: Vec<Vec<String>> = redeploy
            .iter()
            .map(|e| vec![text(&e["name"]), text(&e["kind"]), text(&e["image"])])
            .collect();
        out.push_str(&indent(&table(&["NAME", "KIND", "RUNS"], &rows)));
    }
    if !skipped.is_empty() {
        out.push_str(&format!("\nAlso running {image}, and left alone:"));
        out.push('\n');
        let rows: Vec<Vec<String>> = skipped
            .iter()
            .map(|e| {
                vec![
                    text(&e["name"]),
                    text(&e["kind"]),
                    text(&e["image"]),
                    text(&e["reason"]),
                ]
            })
            .collect();
        out.push_str(&indent(&table(&["NAME", "KIND", "RUNS", "WHY NOT"], &rows)));
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// `hoist rollback NAME`: what was queued, and how the job ended when waited for.
pub fn render_rollback(receipt: &Value, finished: Option<&Value>) -> String {
    let mut out = format!(
        "Rollback of {} queued as job {}: {} back to {} (what it ran until {}).\n",
        text(&receipt["target"]),
        text(&receipt["job"]),
        text(&receipt["image"]),
        short(&text(&receipt["digest"])),
        text(&receipt["replaced_at"])
            .chars()
            .take(19)
            .collect::<String>()
            .replace('T', " "),
    );
    match finished {
        Some(job) => {
            for t in job["targets"].as_array().cloned().unwrap_or_default() {
                out.push_str(&format!("{}: {}", text(&t["name"]), outcome_words(&t["outcome"])));
                out.push('\n');
            }
            if job["targets"].as_array().is_none_or(|t| t.is_empty()) {
                out.push_str(&format!("Finished: {}.", text(&job["state"])));
                out.push('\n');
            }
        }
        None => out.push_str("Not finished yet; `hoist history` shows how it ends.\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_plans_say_why_not() {
        let plan = json!({
            "image": "127.0.0.1:5000/team/app:1.4",
            "redeploy": [{"name": "web", "kind": "container", "image": "127.0.0.1:5000/team/app:1.4"}],
            "skipped": [
                {"name": "plain", "kind": "container", "image": "127.0.0.1:5000/team/app:1.4", "reason": "not labelled (hoist.enable=true)"}
            ]
        });
        let text = render_plan(&plan);
        assert!(
            text.starts_with("A push of 127.0.0.1:5000/team/app:1.4 would redeploy:\n  NAME  KIND"),
            "{text}"
        );
        assert!(
            text.contains("plain  container  127.0.0.1:5000/team/app:1.4  not labelled (hoist.enable=true)"),
            "{text}"
        );
        let empty = render_plan(&json!({"image": "x:1", "redeploy": [], "skipped": []}));
        assert_eq!(empty, "A push of x:1 would redeploy nothing.\n");
    }
}
