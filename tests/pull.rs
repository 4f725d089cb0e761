//! `HOIST_PULL_TIMEOUT` bounds the whole pull, not only the engine's first
//! answer: a registry that stops sending in the middle of a layer fails the
//! push clearly, and touches nothing.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::container::outcome;
use crate::harness::{build_and_push, docker, inspect, unique, Behaviour, Cleanup, Hoist, Registry};

/// A proxy in front of the registry that passes every request through, but
/// stops a blob download after its response headers: the engine's pull is
/// under way, its progress stream open, and nothing more comes. (The real
/// registry cannot be made to stall; the engine does the real pull.)
async fn stalling_proxy(upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, upstream));
        }
    });
    port
}

async fn relay(mut client: TcpStream, upstream: u16) {
    let mut byte = [0u8; 1];
    // The engine tries TLS first (a 0x16 handshake record), then plain HTTP:
    // refuse TLS at once, as the plain registry does.
    if client.peek(&mut byte).await.is_err() || byte[0] == 0x16 {
        return;
    }
    // The engine's registry client opens a connection per request (no keep-alive).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    if server.write_all(&head).await.is_err() {
        return;
    }
    let request_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    if request_line.starts_with("GET ") && request_line.contains("/blobs/") {
        // The answer's head, then silence, for as long as the engine waits.
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            match server.read(&mut byte).await {
                Ok(1) => answer.push(byte[0]),
                _ => return,
            }
        }
        if client.write_all(&answer).await.is_err() {
            return;
        }
        let mut rest = [0u8; 1024];
        while matches!(client.read(&mut rest).await, Ok(n) if n > 0) {}
        return;
    }
    tokio::io::copy_bidirectional(&mut client, &mut server).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_that_stalls_fails_within_the_pull_timeout_and_touches_nothing() {
    crate::harness::init_logs();
    let (registry_port, hoist_port) = (crate::harness::free_port(), crate::harness::free_port());
    let proxy_port = stalling_proxy(registry_port).await;
    // The registry notifies a hoist that starts only once the new image is in
    // the registry and no longer in the engine, so that the engine must
    // download it (an image it has is not pulled at all). The registry retries
    // its notifications until hoist is there.
    let registry = Registry::start_on(
        registry_port,
        &format!("http://127.0.0.1:{hoist_port}/v1/hooks/distribution"),
    );
    let repository = unique("stalled");
    let pushed = format!("127.0.0.1:{registry_port}/{repository}:1");
    let proxied = format!("127.0.0.1:{proxy_port}/{repository}:1");
    let mut clean = Cleanup::default();
    clean.image(&pushed);
    clean.image(&proxied);
    build_and_push(&pushed, "v1", Behaviour::Serve);
    docker(&["tag", &pushed, &proxied]);
    let name = unique("stalled");
    clean.container(&name);
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "hoist.enable=true",
        &proxied,
    ]);
    let digest = build_and_push(&pushed, "v2", Behaviour::Serve);
    docker(&["rmi", &pushed]);
    let before = inspect(&name);

    // The registry reports its own address; the container pulls through the proxy.
    let aliases = format!("127.0.0.1:{registry_port}=127.0.0.1:{proxy_port}");
    let listen = format!("127.0.0.1:{hoist_port}");
    let hoist = Hoist::start(&[
        ("HOIST_LISTEN", &listen),
        ("HOIST_REGISTRY_ALIASES", &aliases),
        ("HOIST_PULL_TIMEOUT", "3s"),
    ])
    .await;
    // Far less than the engine would wait on its own (it has no limit).
    let job = hoist
        .wait_for_job(&pushed, &digest, Duration::from_secs(60))
        .await;
    let result = outcome(&job, &name);
    assert_eq!(result["result"], "failed", "{job}");
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.contains("HOIST_PULL_TIMEOUT") && reason.contains("nothing was changed"),
        "{reason}"
    );
    // The engine had answered and was streaming the pull when time ran out.
    assert!(reason.contains("last progress: "), "{reason}");
    let after = inspect(&name);
    assert_eq!(after["Id"], before["Id"], "the container was touched");
    assert_eq!(after["Image"], before["Image"]);
    assert_eq!(after["State"]["Running"], true);
    // The stalled pull left no image behind.
    let images = docker(&[
        "images",
        "--digests",
        "--format",
        "{{.Digest}}",
        &format!("127.0.0.1:{proxy_port}/{repository}"),
    ]);
    assert!(!images.contains(&digest), "the stalled image is there: {images}");
    hoist.stop().await;
    drop(registry);
}
