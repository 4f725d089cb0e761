//! A loopback HTTP receiver that records every request exactly: the stand-in
//! for Slack and Teams webhooks.
//!
//! It listens on 127.0.0.1:0, answers each request with the next reply of a
//! script (a status, or a hang that never answers until the recorder is
//! dropped), and keeps method, path, headers and body for the test to assert
//! on. Self-contained: it needs nothing else from the harness.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the recorder does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer with this status (body `ok` for 2xx, `error <status>` otherwise).
    Status(u16),
    /// Never answer (until the recorder is dropped).
    Hang,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The reply the recorder chose for it.
    pub reply: Reply,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

struct Shared {
    /// Replies still to give, first one first; `then` after they run out.
    script: Mutex<Vec<Reply>>,
    then: Reply,
    requests: Mutex<Vec<Recorded>>,
    /// Cancelled on drop, which releases hanging requests.
    release: CancellationToken,
}

/// A running recorder; stops (and releases hung requests) on drop.
pub struct Recorder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Recorder {
    /// Replies with `script` in order, then with `then` for ever.
    pub async fn start(script: Vec<Reply>, then: Reply) -> Recorder {
        let mut script = script;
        script.reverse();
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            then,
            requests: Mutex::new(Vec::new()),
            release: CancellationToken::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let app = Router::new().fallback(record).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("recorder server");
        });
        Recorder { addr, shared, server }
    }

    /// Always answers `status`.
    pub async fn always(status: u16) -> Recorder {
        Recorder::start(vec![], Reply::Status(status)).await
    }

    /// Answers these statuses in order, then 200.
    pub async fn statuses(statuses: &[u16]) -> Recorder {
        Recorder::start(
            statuses.iter().map(|s| Reply::Status(*s)).collect(),
            Reply::Status(200),
        )
        .await
    }

    /// Never answers.
    pub async fn hanging() -> Recorder {
        Recorder::start(vec![], Reply::Hang).await
    }

    /// `http://127.0.0.1:<port><path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived, or panics after `limit`.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + limit;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "expected {count} request(s) within {limit:?}, got {}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shared.release.cancel();
        self.server.abort();
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let reply = shared.script.lock().unwrap().pop().unwrap_or(shared.then);
    shared.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |p| p.to_string()),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
        reply,
        at: Instant::now(),
    });
    match reply {
        Reply::Status(status) => {
            let status = StatusCode::from_u16(status).expect("a valid status");
            let body = if status.is_success() {
                "ok".to_string()
            } else {
                format!("error {}", status.as_u16())
            };
            (status, body)
        }
        Reply::Hang => {
            shared.release.cancelled().await;
            (StatusCode::SERVICE_UNAVAILABLE, "released".into())
        }
    }
}
