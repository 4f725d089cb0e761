//! The operator CLI against a running hoist on the real engine: `hoist plan`,
//! `status`, `history` and `rollback`, tables and `--json`, and clear
//! failures when hoist cannot be reached or refuses the token. The session
//! is written to target/cli-transcript.txt (the README's transcript).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    build_and_push, docker, free_port, image_id, inspect, unique, Behaviour, Cleanup, Hoist, Registry, TOKEN,
};
use crate::operator::run_labelled;

/// `hoist ARGS` against `url` with `token`: (exit code, stdout, stderr).
fn hoist_cli(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(args)
        .env("HOIST_URL", url)
        .env("HOIST_WEBHOOK_TOKEN", token)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// Keeps what a user would see in a terminal, for the README.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    fn run(&mut self, url: &str, token: &str, args: &[&str], shown: &str) -> (i32, String, String) {
        let (code, out, err) = hoist_cli(url, token, args);
        self.0.push_str(&format!(
            "$ hoist {}\n{out}{err}",
            args.join(" ").replace(&*shown_tag(args), shown)
        ));
        if code != 0 {
            self.0.push_str(&format!("(exit {code})\n"));
        }
        self.0.push('\n');
        (code, out, err)
    }
}

fn shown_tag(args: &[&str]) -> String {
    args.iter()
        .find(|a| a.contains(':'))
        .map_or(String::from("\u{0}"), |a| a.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_status_history_and_rollback_from_the_cli() {
    let hoist = Hoist::start(&[]).await;
    let url = format!("http://{}", hoist.addr);
    let registry = Registry::start(&hoist.hook_url());
    let tag = format!("{}:1.4", registry.repo(&unique("cli")));
    let mut clean = Cleanup::default();
    clean.image(&tag);
    let v1 = build_and_push(&tag, "v1", Behaviour::Serve);
    let v1_id = image_id(&tag);

    let (web, plain, watch, pinned) = (unique("web"), unique("plain"), unique("watch"), unique("pinned"));
    run_labelled(&mut clean, &web, &tag, &["-e", "GREETING=hello"]);
    clean.container(&plain);
    docker(&["run", "-d", "--name", &plain, &tag]);
    run_labelled(&mut clean, &watch, &tag, &["--label", "hoist.monitor-only=true"]);
    let by_digest = format!("{tag}@{v1}");
    run_labelled(&mut clean, &pinned, &by_digest, &[]);
    hoist.wait_for_target(&web).await;
    hoist.wait_for_target(&watch).await;

    let mut transcript = Transcript::default();
    // plan: the labelled one would be redeployed; each other says why not.
    let (code, out, err) = transcript.run(&url, TOKEN, &["plan", &tag], &tag);
    assert_eq!(code, 0, "{err}");
    let (_, json, _) = hoist_cli(&url, TOKEN, &["plan", &tag, "--json"]);
    let plan: Value = serde_json::from_str(&json).unwrap();
    let names = |key: &str| -> Vec<(String, String)> {
        plan[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    assert_eq!(names("redeploy"), vec![(web.clone(), String::new())], "{plan}");
    let skipped = names("skipped");
    let why = |name: &str| {
        skipped
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{name} not in {plan}"))
    };
    assert_eq!(why(&plain), "not labelled (hoist.enable=true)");
    assert!(why(&watch).starts_with("monitor-only"), "{plan}");
    assert!(why(&pinned).starts_with("pinned by digest"), "{plan}");
    assert!(out.contains(&web) && out.contains("not labelled"), "{out}");

    // A push, then status and history.
    let v2 = build_and_push(&tag, "v2", Behaviour::Serve);
    let job = hoist.wait_for_job(&tag, &v2, Duration::from_secs(90)).await;
    let updated = job["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == web.as_str())
        .unwrap();
    assert_eq!(updated["outcome"]["result"], "updated", "{job}");
    let v2_id = image_id(&tag);
    assert_ne!(v1_id, v2_id);
    let (code, out, _) = transcript.run(&url, TOKEN, &["status"], &tag);
    assert_eq!(code, 0);
    let line = out
        .lines()
        .find(|l| l.starts_with(&web))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("updated") && line.contains(&v2[..19]), "{out}");
    let (code, out, _) = transcript.run(&url, TOKEN, &["history", "--limit", "5"], &tag);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("{web}=updated")), "{out}");

    // rollback: the image web ran before, its configuration kept, health-gated.
    let (code, out, err) = transcript.run(&url, TOKEN, &["rollback", &web], &tag);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{web}: updated")), "{out}");
    let after = inspect(&web);
    assert_eq!(after["Image"], v1_id.as_str(), "web runs v1 again");
    assert!(after["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=hello"));
    assert_eq!(
        inspect(&plain)["Image"],
        v1_id.as_str(),
        "the unlabelled one was never touched"
    );
    let history = hoist.get_json("/v1/history").await;
    let rollback_job = &history["jobs"][0];
    assert_eq!(rollback_job["source"], "rollback", "{rollback_job}");
    assert_eq!(rollback_job["new_digest"], v1.as_str());
    assert_eq!(
        rollback_job["targets"].as_array().unwrap().len(),
        1,
        "only web: {rollback_job}"
    );
    // A second rollback puts v2 back (what web ran before the rollback).
    let (code, _, err) = hoist_cli(&url, TOKEN, &["rollback", &web]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(inspect(&web)["Image"], v2_id.as_str());

    // Refusals and failures are clear, and not zero.
    let (code, _, err) = transcript.run(&url, TOKEN, &["rollback", "no-such-container"], &tag);
    assert_eq!(code, 1);
    assert!(err.contains("no target is called \"no-such-container\""), "{err}");
    let (code, _, err) = transcript.run(&url, "wrong-token-0123456789", &["status"], &tag);
    assert_eq!(code, 77);
    assert!(err.contains("refused the token"), "{err}");
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = transcript.run(&nowhere, TOKEN, &["status"], &tag);
    assert_eq!(code, 69);
    assert!(err.contains("cannot reach hoist at"), "{err}");

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/cli-transcript.txt");
    std::fs::write(path, &transcript.0).unwrap();
    println!("{}", transcript.0);
    hoist.stop().await;
}
