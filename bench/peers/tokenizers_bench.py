#!/usr/bin/env python3
"""The `tokenizers` library's encode and decode MB/s on one thread, on the same chunks
as bench/tokenizer_bench.cc (cut at line boundaries after --chunk-bytes).

  python3 tokenizers_bench.py --model DIR --text FILE [--chunk-bytes 4096] [--repeats 5]
"""
import argparse
import json
import os
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def chunks(text, chunk_bytes):
    data = text.encode("utf-8")
    out, start = [], 0
    while start < len(data):
        end = min(len(data), start + chunk_bytes)
        if end < len(data):
            nl = data.find(b"\n", end)
            end = len(data) if nl < 0 else nl + 1
        out.append(data[start:end].decode("utf-8"))
        start = end
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--chunk-bytes", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import tokenizers
    text = open(args.text, encoding="utf-8", newline="").read()
    pieces = chunks(text, args.chunk_bytes)
    nbytes = len(text.encode("utf-8"))
    best_e = best_d = 1e30
    for _ in range(args.repeats):
        tok = tokenizers.Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
        t0 = time.perf_counter()
        ids = [tok.encode(p, add_special_tokens=False).ids for p in pieces]
        t1 = time.perf_counter()
        dec = sum(len(tok.decode(i, skip_special_tokens=False).encode("utf-8")) for i in ids)
        t2 = time.perf_counter()
        best_e, best_d = min(best_e, t1 - t0), min(best_d, t2 - t1)
    print(json.dumps({"impl": f"tokenizers {tokenizers.__version__}", "model": args.model, "text": args.text,
                      "bytes": nbytes, "chunks": len(pieces), "tokens": sum(len(i) for i in ids),
                      "encode_mb_s": nbytes / best_e / 1e6, "decode_mb_s": dec / best_d / 1e6,
                      "encode_s": best_e, "decode_s": best_d}))


if __name__ == "__main__":
    main()
