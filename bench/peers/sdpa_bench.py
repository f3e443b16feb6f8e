#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the prefill shapes of lattice_kernel_bench.

Causal, bf16, GQA expanded to the query heads as the FlashAttention backend wants
(enable_gqa where the PyTorch version has it). FLOPs counted as lattice_kernel_bench
counts them: 4 * S^2 / 2 * heads * head_dim per sequence. One JSON object per line, with
three timings as lattice_kernel_bench takes them: single calls (host launch cost included),
short back-to-back runs, and sustained (after ~1 s of back-to-back calls, at the clock the
power limit allows). Each shape starts after 300 ms of idle.
"""
import json
import time

import torch
import torch.nn.functional as F


def time_ms(fn, reps=20, calls=1):
    """Median ms per call over `reps` timed runs of `calls` calls between two events.

    calls = 1 includes the host's launch cost; calls > 1 queues them back to back.
    """
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop) / calls)
    times.sort()
    return times[len(times) // 2]


def sustained_ms(fn, ms_per_call):
    """Median ms per call once fn has run back to back for about a second.

    The GPU has then settled at the clock its power limit allows, as in a loop of model
    steps; the short back-to-back runs of time_ms start from the clock an idle GPU boosts to.
    Matches SustainedMs in bench/kernel_bench.cc.
    """
    for _ in range(max(10, int(1000.0 / ms_per_call))):
        fn()
    return time_ms(fn, reps=10, calls=max(10, int(50.0 / ms_per_call)))


def main():
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}))
    heads, kv_heads, head_dim = 32, 8, 128
    for seqs, s in [(1, 1024), (1, 4096), (1, 8192), (4, 2048)]:
        q = torch.randn(seqs, heads, s, head_dim, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(seqs, kv_heads, s, head_dim, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(seqs, kv_heads, s, head_dim, device="cuda", dtype=torch.bfloat16)
        try:
            fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            fn()
        except TypeError:
            k2, v2 = k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1)
            fn = lambda: F.scaled_dot_product_attention(q, k2, v2, is_causal=True)
        # Each shape starts from a rested GPU, as in lattice_kernel_bench: the clock the
        # short runs get depends on what ran just before them.
        torch.cuda.synchronize()
        time.sleep(0.3)
        ms = time_ms(fn)
        loop_ms = time_ms(fn, reps=5, calls=10)
        flops = 4.0 * seqs * s * s / 2 * heads * head_dim
        print(json.dumps({"bench": "sdpa_prefill", "seqs": seqs, "q_len": s, "heads": heads,
                          "kv_heads": kv_heads, "head_dim": head_dim, "ms": ms,
                          "tflops": flops / (ms * 1e-3) / 1e12,
                          "tflops_back_to_back": flops / (loop_ms * 1e-3) / 1e12,
                          "tflops_sustained": flops / (sustained_ms(fn, loop_ms) * 1e-3) / 1e12}))


if __name__ == "__main__":
    main()
