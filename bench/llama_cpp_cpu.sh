#!/usr/bin/env bash
# Peer baseline on the CPU: llama.cpp's llama-bench on the same GGUF, built
# from the llama.cpp sources vendored in the llama-cpp-python sdist on PyPI
# (the only registry this machine reaches). Nothing is committed: sources and
# build live under $GRAFT_HOME/peers.
#
#   bash bench/llama_cpp_cpu.sh [MODEL.gguf] [THREADS]
#
# Prints llama-bench's table: pp128 (prefill tok/s) and tg64 (decode tok/s).
set -euo pipefail
model=${1:-${GRAFT_HOME:-$HOME/.cache/graft}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${2:-$(nproc)}
peers=${GRAFT_HOME:-$HOME/.cache/graft}/peers
mkdir -p "$peers"
cd "$peers"
if [ ! -x llama.cpp-build/bin/llama-bench ]; then
  command -v cmake >/dev/null || python3 -m pip install --quiet cmake
  if [ ! -d llama-cpp-python ]; then
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d sdist
    mkdir -p llama-cpp-python && tar -xzf sdist/llama_cpp_python-0.3.36.tar.gz -C llama-cpp-python --strip-components=1
  fi
  cmake -S llama-cpp-python/vendor/llama.cpp -B llama.cpp-build -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF >/dev/null
  cmake --build llama.cpp-build --target llama-bench -j "$(nproc)" >/dev/null
fi
llama.cpp-build/bin/llama-bench -m "$model" -p 128 -n 64 -t "$threads" -r 3
