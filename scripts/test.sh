#!/usr/bin/env bash
# The whole test suite on a fresh machine of this image: fetches the default
# model (tests read it from $GRAFT_HOME), then runs every test in release mode
# (model tests are too slow unoptimised). The reference fixtures the golden
# tests compare against are committed, so no Python packages are needed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p graft-server
./target/release/graft models fetch
cargo test --release --locked --workspace --no-fail-fast
