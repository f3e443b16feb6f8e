#!/usr/bin/env python3
"""Hugging Face transformers on the same model shape and GPU as lattice_step_bench.

Builds the model from config.json alone with random bf16 weights on the GPU (no
checkpoint), then times greedy decode steps of `batch` sequences with `context`
cached tokens through the model's forward with a static KV cache (transformers'
fastest eager decode path; torch.compile is left out to keep the run short).
Prints one JSON object per batch size: median step time and tokens/s.

  python3 bench/peers/hf_decode.py --model bench/models/llama-3.1-8b --batch-sizes 1,8,64
"""
import argparse
import json

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    config = AutoConfig.from_pretrained(args.model)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.eval()
    print(json.dumps({"peer": "transformers", "version": transformers.__version__,
                      "device": torch.cuda.get_device_name(), "model": args.model}))
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        ids = torch.randint(0, config.vocab_size, (batch, args.context), device="cuda")
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True)
            cache = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
            times = []
            for step in range(args.steps + 3):
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = model(input_ids=token, past_key_values=cache, use_cache=True)
                token = out.logits[:, -1:].argmax(-1)
                stop.record()
                torch.cuda.synchronize()
                if step >= 3:
                    times.append(start.elapsed_time(stop))
                cache = out.past_key_values
        times.sort()
        ms = times[len(times) // 2]
        print(json.dumps({"batch": batch, "context": args.context, "step_ms": ms,
                          "tokens_per_s": batch / (ms * 1e-3)}))
        del cache, out
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
