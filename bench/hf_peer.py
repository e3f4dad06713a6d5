#!/usr/bin/env python3
"""Peer baseline for the CUDA benchmarks: Hugging Face transformers, bf16 on
the GPU, greedy and with prompt lookup (`prompt_lookup_num_tokens`), on the
same prompts and output lengths as `graft bench spec --dump-cases` (each case
generates exactly graft's number of output tokens). Also measures the two
ceilings with PyTorch (device-to-device copy bandwidth, bf16 matmul rate) and
prints graft's figures for the same cases next to the peers'.

Needs torch, transformers and (to read GGUF) the `gguf` package.

    python3 bench/hf_peer.py --gguf MODEL.gguf --cases cases.jsonl [--n 10]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def ceilings():
    """Copy bandwidth (bytes read + written per second) and bf16 matmul rate."""
    src = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    bandwidth = 2 * src.numel() / best
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    rate = 10 * 2 * 8192**3 / (time.perf_counter() - t)
    return bandwidth, rate


def percentile(values, p):
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", required=True, type=Path)
    parser.add_argument("--cases", required=True, type=Path)
    parser.add_argument("--n", type=int, default=10, help="cases to run (the first ones of the dump)")
    parser.add_argument("--lookup", type=int, default=10, help="prompt_lookup_num_tokens")
    args = parser.parse_args()

    bandwidth, rate = ceilings()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    print(f"ceilings (PyTorch): copy {bandwidth / 1e9:.0f} GB/s (read + written), bf16 matmul {rate / 1e12:.0f} TFLOP/s")

    cases = [json.loads(line) for line in args.cases.read_text().splitlines() if line.strip()][: args.n]
    tokenizer = AutoTokenizer.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name)
    model = AutoModelForCausalLM.from_pretrained(args.gguf.parent, gguf_file=args.gguf.name, dtype=torch.bfloat16)
    model = model.cuda().eval()

    def run(ids, n, **extra):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, **extra)
        torch.cuda.synchronize()
        return time.perf_counter() - t, out.shape[1] - ids.shape[1]

    first = tokenizer(cases[0]["prompt"], return_tensors="pt").input_ids.cuda()
    run(first, 8)
    run(first, 8, prompt_lookup_num_tokens=args.lookup)

    modes = {"hf greedy": {}, "hf lookup": {"prompt_lookup_num_tokens": args.lookup}}
    results = {name: [] for name in modes}
    mismatched = 0
    for case in cases:
        ids = tokenizer(case["prompt"], return_tensors="pt").input_ids.cuda()
        mismatched += ids.shape[1] != case["prompt_tokens"]
        for name, extra in modes.items():
            secs, tokens = run(ids, case["output_tokens"], **extra)
            results[name].append((secs * 1e3, tokens))
        print(f"{case['id'][:40]:<40} prompt {ids.shape[1]:>5} out {case['output_tokens']:>4}  "
              + "  ".join(f"{name} {results[name][-1][0]:8.1f} ms" for name in modes), flush=True)
    for index, name in enumerate(["graft none", "graft lookup", "graft text"]):
        results[name] = [(case["latency_ms"][index], case["output_tokens"]) for case in cases]

    print()
    print(f"{len(cases)} cases, same prompts and output lengths ({mismatched} prompts tokenized to another length)")
    print(f"{'engine':<14} {'p50 ms':>10} {'p90 ms':>10} {'output tok/s':>14} {'graft text x':>14}")
    graft_rate = None
    rows = []
    for name, runs in results.items():
        ms = [m for m, _ in runs]
        rate_ = sum(t for _, t in runs) / (sum(ms) / 1e3)
        rows.append((name, percentile(ms, 50), percentile(ms, 90), rate_))
        if name == "graft text":
            graft_rate = rate_
    for name, p50, p90, rate_ in rows:
        print(f"{name:<14} {p50:>10.1f} {p90:>10.1f} {rate_:>14.0f} {graft_rate / rate_:>14.1f}")
    print("(latency: prefill + decode of a case; output tok/s: output tokens over total time;"
          " graft text x: graft with the expected output as draft, speed-up over this row)")


if __name__ == "__main__":
    main()
