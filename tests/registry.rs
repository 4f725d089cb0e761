//! Registries that want a login: pulls with the docker config's credentials
//! (read again when it changes), refusals reported plainly with nothing
//! touched, and the registry client against a real Distribution registry
//! (Basic) and a loopback stub (the Bearer token flow and 429 Retry-After).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use hoist::event::{Aliases, ImageRef};
use hoist::registry::{Client, Credentials, Insecure, RegistryError, MANIFEST_ACCEPT};

use crate::harness::{
    build_image, docker, inspect, unique, Behaviour, Cleanup, DockerConfig, Hoist, Registry,
};

const JOB_WAIT: Duration = Duration::from_secs(90);
const USER: &str = "alice";
/// `+`, `/` and `=` in the password, and in the base64 of `alice:<password>` too.
const PASSWORD: &str = "p+ss/w=rd>>?";

fn outcome(job: &serde_json::Value, name: &str) -> serde_json::Value {
    crate::container::outcome(job, name)
}

/// Runs `tag` as a labelled container called `name`; returns its ID.
fn run_labelled(name: &str, tag: &str) -> String {
    docker(&["run", "-d", "--name", name, "--label", "hoist.enable=true", tag])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_redeploys_a_container_from_a_registry_that_wants_a_login() {
    let login = DockerConfig::new();
    let hoist = Hoist::start(&[("HOIST_DOCKER_CONFIG", &login.file().display().to_string())]).await;
    let registry = Registry::start_with_login(Some(&hoist.hook_url()), USER, PASSWORD);
    login.login(&registry.host, USER, PASSWORD);
    let tag = format!("{}:1", registry.repo(&format!("team/{}", unique("app"))));
    let name = unique("private");
    let mut clean = Cleanup::default();
    clean.image(&tag);
    clean.container(&name);

    build_image(&tag, "v1", Behaviour::Serve);
    login.push(&tag);
    let old_id = run_labelled(&name, &tag);
    hoist.wait_for_target(&name).await;

    build_image(&tag, "v2", Behaviour::Serve);
    let digest = login.push(&tag);
    let job = hoist.wait_for_job(&tag, &digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "updated", "{job}");
    let after = inspect(&name);
    assert_ne!(after["Id"], old_id.as_str());
    assert_eq!(after["State"]["Running"], true);
    let repo_digests = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        after["Image"].as_str().unwrap(),
    ]);
    assert!(repo_digests.contains(&digest), "{repo_digests} lacks {digest}");
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_after_start_is_used_and_a_refused_one_touches_nothing() {
    // hoist's config file does not exist yet; the test pushes with a login of its own.
    let hoist_config = DockerConfig::new();
    let pusher = DockerConfig::new();
    let hoist = Hoist::start(&[("HOIST_DOCKER_CONFIG", &hoist_config.file().display().to_string())]).await;
    let registry = Registry::start_with_login(Some(&hoist.hook_url()), USER, PASSWORD);
    pusher.login(&registry.host, USER, PASSWORD);
    let repository = format!("team/{}", unique("app"));
    let tag = format!("{}:1", registry.repo(&repository));
    let name = unique("private");
    let mut clean = Cleanup::default();
    clean.image(&tag);
    clean.container(&name);
    build_image(&tag, "v1", Behaviour::Serve);
    pusher.push(&tag);
    let id = run_labelled(&name, &tag);
    hoist.wait_for_target(&name).await;
    let untouched = |job: &serde_json::Value| {
        let now = inspect(&name);
        assert_eq!(now["Id"], id.as_str(), "the container was not replaced: {job}");
        assert_eq!(now["State"]["Running"], true, "{job}");
    };

    // No credentials at all: the outcome says the registry wants a login.
    build_image(&tag, "v2", Behaviour::Serve);
    let digest = pusher.push(&tag);
    let job = hoist.wait_for_job(&tag, &digest, JOB_WAIT).await;
    let result = outcome(&job, &name);
    assert_eq!(result["result"], "failed", "{job}");
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "registry {} wants a login to pull {repository}",
            registry.host
        )),
        "{reason}"
    );
    assert!(
        reason.contains(&hoist_config.file().display().to_string()),
        "{reason}"
    );
    untouched(&job);

    // A wrong password written after start: read, sent, refused, said so.
    hoist_config.login(&registry.host, USER, "wrong+password/=");
    build_image(&tag, "v3", Behaviour::Serve);
    let digest = pusher.push(&tag);
    let job = hoist.wait_for_job(&tag, &digest, JOB_WAIT).await;
    let result = outcome(&job, &name);
    assert_eq!(result["result"], "failed", "{job}");
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "registry {} refused the credentials of user {USER} for {repository}",
            registry.host
        )),
        "{reason}"
    );
    assert!(
        !reason.contains("wrong+password"),
        "no secret in the report: {reason}"
    );
    untouched(&job);

    // `docker login` with the right password, hoist still running: the next push deploys.
    hoist_config.login(&registry.host, USER, PASSWORD);
    build_image(&tag, "v4", Behaviour::Serve);
    let digest = pusher.push(&tag);
    let job = hoist.wait_for_job(&tag, &digest, JOB_WAIT).await;
    assert_eq!(outcome(&job, &name)["result"], "updated", "{job}");
    assert_ne!(inspect(&name)["Id"], id.as_str());
    hoist.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reads_digests_from_a_registry_with_basic_auth() {
    crate::harness::init_logs();
    let registry = Registry::start_with_login(None, USER, PASSWORD);
    let login = DockerConfig::new();
    login.login(&registry.host, USER, PASSWORD);
    let repository = format!("team/{}", unique("app"));
    let tag = format!("{}:1", registry.repo(&repository));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    build_image(&tag, "v1", Behaviour::Serve);
    let pushed = login.push(&tag);
    let image = ImageRef::parse(&tag).unwrap();

    let client = |config: &DockerConfig| {
        Client::new(
            Credentials::new(Some(config.file()), Aliases::default()),
            Insecure::default(),
        )
        .unwrap()
    };
    let with_login = client(&login);
    assert_eq!(with_login.digest(&image).await.unwrap().as_str(), pushed);
    // Again, now that the client knows the registry wants Basic credentials.
    assert_eq!(with_login.digest(&image).await.unwrap().as_str(), pushed);

    let missing = ImageRef::parse(&format!("{}:nope", registry.repo(&repository))).unwrap();
    let error = with_login.digest(&missing).await.unwrap_err();
    assert!(matches!(error, RegistryError::NotFound { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("registry {} has no {repository}:nope", registry.host)
    );

    let wrong = DockerConfig::new();
    wrong.login(&registry.host, USER, "not-it");
    let error = client(&wrong).digest(&image).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "registry {} refused access to {repository}: the registry refused the credentials of user {USER}",
            registry.host
        )
    );
    let nobody = DockerConfig::new();
    let error = client(&nobody).digest(&image).await.unwrap_err();
    assert!(matches!(error, RegistryError::Unauthorized { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("it wants a login, and the docker config"),
        "{error}"
    );
    // Refusals are not a reason to pause the registry.
    assert_eq!(client(&nobody).paused_until(&registry.host), None);
}

/// One request the stub saw.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    /// Path and query.
    uri: String,
    authorization: Option<String>,
    accept: Option<String>,
    body: String,
    at: Instant,
}

#[derive(Clone, Default)]
struct Stub {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answers the next manifest request with 429 and `Retry-After: 2`.
    limit_next: Arc<Mutex<bool>>,
    addr: Arc<Mutex<Option<SocketAddr>>>,
}

const STUB_DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const TOKEN: &str = "tok-1";

/// A registry that speaks the Bearer token flow: manifests want a token from
/// `/token`, which wants Basic credentials `bob:<PASSWORD>`.
async fn stub_answer(State(stub): State<Stub>, request: Request) -> Response {
    let header = |headers: &HeaderMap, name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let seen = Seen {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        authorization: header(&parts.headers, header::AUTHORIZATION),
        accept: header(&parts.headers, header::ACCEPT),
        body: String::from_utf8_lossy(&body).to_string(),
        at: Instant::now(),
    };
    stub.seen.lock().unwrap().push(seen.clone());
    let addr = stub.addr.lock().unwrap().unwrap();
    let reply = |status: StatusCode, headers: &[(&str, String)], body: &str| {
        let mut response = Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, value);
        }
        response.body(Body::from(body.to_string())).unwrap()
    };
    if parts.uri.path() == "/token" {
        use base64::Engine as _;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("bob:{PASSWORD}"))
        );
        // An identity token from `docker login` is sent as an OAuth refresh token.
        let refreshed = seen.method == Method::POST && seen.body.contains("refresh_token=refresh-abc");
        return if seen.authorization.as_deref() == Some(expected.as_str()) || refreshed {
            reply(
                StatusCode::OK,
                &[],
                &format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#),
            )
        } else {
            reply(StatusCode::UNAUTHORIZED, &[], "{}")
        };
    }
    if std::mem::take(&mut *stub.limit_next.lock().unwrap()) {
        return reply(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "2".into())], "");
    }
    if seen.authorization.as_deref() == Some(&format!("Bearer {TOKEN}")) {
        return reply(
            StatusCode::OK,
            &[("docker-content-digest", STUB_DIGEST.into())],
            "",
        );
    }
    let challenge =
        format!(r#"Bearer realm="http://{addr}/token",service="stub.test",scope="repository:team/app:pull""#);
    reply(StatusCode::UNAUTHORIZED, &[("www-authenticate", challenge)], "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_the_token_flow_and_waits_out_a_429() {
    crate::harness::init_logs();
    let stub = Stub::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *stub.addr.lock().unwrap() = Some(addr);
    let app = Router::new().fallback(any(stub_answer)).with_state(stub.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = DockerConfig::new();
    config.login(&addr.to_string(), "bob", PASSWORD);
    let client = Client::new(
        Credentials::new(Some(config.file()), Aliases::default()),
        Insecure::default(),
    )
    .unwrap();
    let image = ImageRef::parse(&format!("{addr}/team/app:1")).unwrap();
    let seen = || stub.seen.lock().unwrap().clone();

    // 1. Challenge, token (with Basic credentials), manifest with the token.
    assert_eq!(client.digest(&image).await.unwrap().as_str(), STUB_DIGEST);
    let requests = seen();
    let lines: Vec<(String, String, Option<String>)> = requests
        .iter()
        .map(|s| (s.method.to_string(), s.uri.clone(), s.authorization.clone()))
        .collect();
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("bob:{PASSWORD}"))
    );
    assert_eq!(
        lines,
        vec![
            ("HEAD".into(), "/v2/team/app/manifests/1".into(), None),
            (
                "GET".into(),
                "/token?service=stub.test&scope=repository%3Ateam%2Fapp%3Apull".into(),
                Some(basic)
            ),
            (
                "HEAD".into(),
                "/v2/team/app/manifests/1".into(),
                Some(format!("Bearer {TOKEN}"))
            ),
        ]
    );
    for manifest_request in [&requests[0], &requests[2]] {
        assert_eq!(manifest_request.accept.as_deref(), Some(MANIFEST_ACCEPT));
    }

    // 2. The token is kept: one HEAD.
    client.digest(&image).await.unwrap();
    assert_eq!(seen().len(), 4);
    assert_eq!(seen()[3].authorization.as_deref(), Some("Bearer tok-1"));

    // 3. A 429 with Retry-After: 2 pauses the registry...
    *stub.limit_next.lock().unwrap() = true;
    let error = client.digest(&image).await.unwrap_err();
    assert!(matches!(error, RegistryError::RateLimited { .. }), "{error}");
    assert!(
        error.to_string().starts_with(&format!(
            "registry {addr} is rate-limiting requests (asked for team/app); not asked again before "
        )),
        "{error}"
    );
    let limited_at = seen()[4].at;
    assert_eq!(seen().len(), 5);
    // ...so asking again at once sends nothing,
    let again = client.digest(&image).await.unwrap_err();
    assert!(matches!(again, RegistryError::RateLimited { .. }), "{again}");
    assert_eq!(seen().len(), 5, "a paused registry is not asked");
    assert!(client.paused_until(&addr.to_string()).is_some());
    // ...and a patient caller asks again only after Retry-After.
    assert_eq!(
        client
            .digest_within(&image, Duration::from_secs(30))
            .await
            .unwrap()
            .as_str(),
        STUB_DIGEST
    );
    let requests = seen();
    assert_eq!(requests.len(), 6, "{requests:#?}");
    let pause = requests[5].at - limited_at;
    assert!(
        pause >= Duration::from_secs(2),
        "asked again after {pause:?}, before Retry-After"
    );
    // Never a GET of a manifest: HEADs only (GETs count against pull limits).
    assert!(requests
        .iter()
        .filter(|s| s.uri.contains("/manifests/"))
        .all(|s| s.method == Method::HEAD));

    // An identity token (what `docker login` keeps for OAuth registries) is
    // exchanged as an OAuth2 refresh token, with a POST.
    let oauth = DockerConfig::new();
    let config_text =
        serde_json::json!({ "auths": { addr.to_string(): { "identitytoken": "refresh-abc" } } });
    std::fs::write(oauth.file(), config_text.to_string()).unwrap();
    let client = Client::new(
        Credentials::new(Some(oauth.file()), Aliases::default()),
        Insecure::default(),
    )
    .unwrap();
    assert_eq!(client.digest(&image).await.unwrap().as_str(), STUB_DIGEST);
    let token_request = &seen()[7];
    assert_eq!(
        (token_request.method.clone(), token_request.uri.as_str()),
        (Method::POST, "/token")
    );
    assert_eq!(token_request.authorization, None);
    assert_eq!(
        token_request.body,
        "grant_type=refresh_token&client_id=hoist&refresh_token=refresh-abc&scope=repository%3Ateam%2Fapp%3Apull&service=stub.test"
    );
}
