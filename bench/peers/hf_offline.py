#!/usr/bin/env python3
"""Hugging Face transformers on the workload of `lattice bench offline`: N prompts of
`input_len` random token ids, each generating exactly `output_len` tokens (greedy, eos
ignored), on the same GPU and model shape (config.json alone, random bf16 weights).

transformers has no continuous batching: prompts go through `generate` in static batches
of `--batch-size` (equal lengths, so no padding). Prints one JSON object in the keys of
`lattice bench offline --result-json`: elapsed_time, requests_per_second,
tokens_per_second, output_tokens_per_second.

  python3 bench/peers/hf_offline.py --model bench/models/llama-3.1-8b --num-prompts 256 \
      --input-len 128 --output-len 128 --batch-size 64
"""
import argparse
import json
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    config = AutoConfig.from_pretrained(args.model)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.eval()
    ids = torch.randint(0, config.vocab_size, (args.num_prompts, args.input_len), device="cuda")
    kwargs = dict(max_new_tokens=args.output_len, min_new_tokens=args.output_len, do_sample=False,
                  pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        model.generate(ids[:1, :16], max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        start = time.perf_counter()
        output_tokens = 0
        for b in range(0, args.num_prompts, args.batch_size):
            batch = ids[b:b + args.batch_size]
            out = model.generate(batch, attention_mask=torch.ones_like(batch), **kwargs)
            output_tokens += (out.shape[1] - batch.shape[1]) * batch.shape[0]
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    total = output_tokens + args.num_prompts * args.input_len
    print(json.dumps({"peer": "transformers", "version": transformers.__version__, "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(), "model": args.model, "num_prompts": args.num_prompts,
                      "input_len": args.input_len, "output_len": args.output_len, "batch_size": args.batch_size,
                      "elapsed_time": elapsed, "total_output_tokens": output_tokens,
                      "requests_per_second": args.num_prompts / elapsed, "tokens_per_second": total / elapsed,
                      "output_tokens_per_second": output_tokens / elapsed}))


if __name__ == "__main__":
    main()
