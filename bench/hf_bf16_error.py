#!/usr/bin/env python3
"""What bf16 inference costs in logit accuracy, measured on an independent
implementation: Hugging Face transformers runs the default model's reference
prompts (fixtures/reference/smollm2-135m-instruct-q4_1/reference.json) once in
float32 and once in bfloat16 on the GPU, and this prints, per prompt, the
relative L2 error ||bf16 - f32|| / ||f32|| of every prompt position's logit
row (worst row and median), as JSON.

`graft bench gpu --peer-errors FILE` reads that JSON and holds graft's GPU
logits (bf16, against graft's f32 CPU backend) to a bound scaled from
transformers' own bf16 error on the same rows, since a fixed bound cannot
tell bf16 rounding from a bug on prompts where bf16 itself drifts.

Needs torch, transformers and (to read GGUF) the `gguf` package.

    python3 bench/hf_bf16_error.py --gguf MODEL.gguf --reference reference.json > errors.json
"""

import argparse
import json
import statistics
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM


def row_errors(f32_logits, bf16_logits):
    """Relative L2 error of each row of bf16_logits against f32_logits."""
    diff = (bf16_logits.double() - f32_logits.double()).norm(dim=-1)
    return (diff / f32_logits.double().norm(dim=-1).clamp_min(1e-30)).tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", required=True, type=Path)
    parser.add_argument("--reference", required=True, type=Path)
    args = parser.parse_args()
    reference = json.loads(args.reference.read_text())
    torch.backends.cuda.matmul.allow_tf32 = False  # a true f32 reference
    load = lambda dtype: AutoModelForCausalLM.from_pretrained(  # noqa: E731
        args.gguf.parent, gguf_file=args.gguf.name, dtype=dtype, attn_implementation="eager"
    ).to("cuda").eval()
    models = {"f32": load(torch.float32), "bf16": load(torch.bfloat16)}
    prompts = {}
    for prompt in reference["prompts"]:
        ids = torch.tensor([prompt["input_ids"]], device="cuda")
        with torch.no_grad():
            logits = {name: m(ids).logits[0].float() for name, m in models.items()}
        errors = row_errors(logits["f32"], logits["bf16"])
        worst = max(range(len(errors)), key=errors.__getitem__)
        prompts[prompt["name"]] = {
            "rows": len(errors),
            "worst": errors[worst],
            "worst_row": worst,
            "median": statistics.median(errors),
        }
    print(json.dumps({"implementation": "transformers", "compared": "bf16 vs f32 on cuda", "prompts": prompts}))


if __name__ == "__main__":
    main()
