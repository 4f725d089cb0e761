#!/usr/bin/env bash
# The whole test suite: format and lint checks, unit tests, then the
# integration suite against the real engine, registry and SMTP server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --lib --bins
cargo test --locked --test integration -- --test-threads "${HOIST_TEST_THREADS:-4}"
