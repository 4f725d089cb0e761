//! The `hoist` binary as a user meets it: `--help` lists every variable the
//! configuration reads, and logs written to a file are plain text.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hoist::config::VARIABLES;

#[test]
fn run_help_lists_every_variable_with_its_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    // Meanings wrap across lines: compare with white space collapsed.
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for variable in VARIABLES {
        assert!(
            help.contains(variable.name),
            "{} missing from `hoist run --help`:\n{help}",
            variable.name
        );
        if let Some(default) = variable.default {
            assert!(
                flat.contains(&format!("[default: {default}]")),
                "the default of {} missing from `hoist run --help`",
                variable.name
            );
        }
    }
    assert!(help.contains("hoist.enable=true"), "labels are explained");
    assert!(help.contains("/v1/hooks/distribution"), "routes are explained");
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("hoist.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOIST_WEBHOOK_TOKEN", "a-token-for-the-log-test")
        .env("HOIST_LISTEN", "127.0.0.1:0")
        .env("HOIST_STATE_DIR", dir.path())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if text.contains("hoist is ready") || child.try_wait().unwrap().is_some() {
            break text;
        }
        assert!(Instant::now() < deadline, "hoist never got ready:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().ok();
    child.wait().ok();
    assert!(
        text.contains("hoist is ready"),
        "hoist should start against the local engine:\n{text}"
    );
    assert!(
        text.contains(" INFO "),
        "level names are written as words:\n{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "a log file must hold no terminal escape codes:\n{text:?}"
    );
}
