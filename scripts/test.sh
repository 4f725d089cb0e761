#!/usr/bin/env bash
# The whole test suite: format and lint checks, unit tests, then the
# integration suite against the real engine, registry and SMTP server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --lib --bins
# The release build the packaged image holds (operator::the_release_binary_has_no_crash_test_hooks
# scans it): built here, before the suite, so that minutes of LTO do not
# compete for the cores with the suite's timed waits.
scripts/package-image.sh >/dev/null
cargo test --locked --test integration -- --test-threads "${HOIST_TEST_THREADS:-4}"
