#!/usr/bin/env python3
"""The scaling sweep: serve a model under each layout, load it at each request rate with
`lattice bench serve`, and write CSV + a markdown report + PNG plots (gnuplot).

Runs anywhere `lattice serve` does: on the CPU with the fixture models, on `--device sim`
at cluster scale (hundreds of simulated workers in one process), and on GPUs.

  bench/scaling/sweep.py --model tests/fixtures/models/llama_gqa_f32 --device cpu \
      --layouts tp1 tp2 pp2:mb1 pp2 dp2 --rates 4 16 inf --num-prompts 48 \
      --input-len 64 --output-len 16 --out bench/out/cpu

A layout is tpN, ppN, dpN, epN joined in any order (tp2pp2), with :mbK for K micro-batches
in flight (default: pp). Each point records the bench's summary and what the coordinator
counted during it (steps, pipeline overlap, scheduler busy time).
"""
import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

FIELDS = [
    "layout", "tp", "pp", "dp", "ep", "mb", "world", "rate", "concurrency", "completed", "failed", "duration_s",
    "request_throughput", "output_throughput", "total_token_throughput", "mean_ttft_ms", "p99_ttft_ms",
    "mean_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "p99_itl_ms", "mean_e2el_ms", "p99_e2el_ms", "steps",
    "overlapped_steps", "scheduled_sequences", "scheduler_busy_us", "mean_batch", "scheduler_us_per_step",
    "preemptions", "cached_tokens",
]


def parse_layout(text):
    spec, _, mb = text.partition(":mb")
    sizes = {"tp": 1, "pp": 1, "dp": 1, "ep": 1}
    pos = 0
    for m in re.finditer(r"(tp|pp|dp|ep)(\d+)", spec):
        if m.start() != pos:
            raise SystemExit(f"layout {text!r}: expected tpN/ppN/dpN/epN[:mbK]")
        sizes[m.group(1)] = int(m.group(2))
        pos = m.end()
    if pos != len(spec) or pos == 0:
        raise SystemExit(f"layout {text!r}: expected tpN/ppN/dpN/epN[:mbK]")
    sizes["mb"] = int(mb) if mb else sizes["pp"]
    return sizes


class Server:
    """`lattice serve` on a free port; stopped with SIGTERM."""

    def __init__(self, args, layout):
        cmd = [args.lattice, "serve", "--model", args.model, "--host", "127.0.0.1", "--port", "0",
               "--device", args.device, "--tp", str(layout["tp"]), "--pp", str(layout["pp"]),
               "--dp", str(layout["dp"]), "--ep", str(layout["ep"]),
               "--num-micro-batches", str(layout["mb"])] + args.serve_arg
        if args.device == "sim":
            cmd += ["--sim-hardware", args.sim_hardware]
        self.log = open(os.path.join(args.out, "serve.log"), "a")
        self.log.write("$ " + " ".join(cmd) + "\n")
        self.log.flush()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r":(\d+)\s*$", line)
        if not m:
            self.stop()
            raise RuntimeError(f"lattice serve did not start: {line!r} (see serve.log)")
        self.port = int(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_bench(args, port, rate, seed, result_path):
    cmd = [args.lattice, "bench", "serve", "--port", str(port), "--request-rate", str(rate),
           "--num-prompts", str(args.num_prompts), "--random-input-len", str(args.input_len),
           "--random-output-len", str(args.output_len), "--ignore-eos", "--disable-tqdm",
           "--seed", str(seed), "--result-json", result_path, "--ready-check-timeout-sec",
           str(args.ready_timeout), "--time-limit", str(args.time_limit)] + args.bench_arg
    if args.max_concurrency:
        cmd += ["--max-concurrency", str(args.max_concurrency)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.time_limit + args.ready_timeout + 120)
    if r.returncode != 0:
        raise RuntimeError(f"bench serve failed ({r.returncode}): {r.stderr[-2000:]}")
    with open(result_path) as f:
        return json.load(f)


def server_delta(result):
    """What the coordinator counted during the run (the bench records the cluster
    status before and after)."""
    server = result.get("server_status", {})
    before, after = server.get("before", {}), server.get("after", {})
    out = {}
    for key in ("num_steps", "num_overlapped_steps", "num_scheduled_sequences", "scheduler_busy_us",
                "num_preemptions"):
        total = 0
        for b, a in zip(before.get("instances", []), after.get("instances", [])):
            total += int(a.get(key, 0)) - int(b.get(key, 0))
        out[key] = total
    return out


def row_for(layout_text, layout, rate, result):
    d = server_delta(result)
    steps = d["num_steps"]
    row = {
        "layout": layout_text, "tp": layout["tp"], "pp": layout["pp"], "dp": layout["dp"], "ep": layout["ep"],
        "mb": layout["mb"], "world": layout["tp"] * layout["pp"] * layout["dp"], "rate": rate,
        "concurrency": result.get("max_concurrency"), "completed": result["completed"], "failed": result["failed"],
        "duration_s": result["duration"], "steps": steps, "overlapped_steps": d["num_overlapped_steps"],
        "scheduled_sequences": d["num_scheduled_sequences"], "scheduler_busy_us": d["scheduler_busy_us"],
        "mean_batch": d["num_scheduled_sequences"] / steps if steps else 0,
        "scheduler_us_per_step": d["scheduler_busy_us"] / steps if steps else 0,
        "preemptions": d["num_preemptions"], "cached_tokens": result.get("total_cached_tokens", 0),
    }
    for key in FIELDS:
        if key not in row:
            row[key] = result.get(key)
    return row


def gnuplot(script, out_dir):
    if not shutil.which("gnuplot"):
        print("sweep: gnuplot not found (scripts/install-deps.sh installs gnuplot-nox); no plots", file=sys.stderr)
        return
    subprocess.run(["gnuplot"], input=script, text=True, cwd=out_dir, check=False)


def plot(rows, out_dir, title):
    layouts = list(dict.fromkeys(r["layout"] for r in rows))
    # Throughput against latency, one curve per layout (points ordered by rate).
    for metric, label in (("mean_tpot_ms", "mean TPOT (ms)"), ("p99_e2el_ms", "p99 end-to-end latency (ms)")):
        data = []
        for name in layouts:
            pts = sorted((r for r in rows if r["layout"] == name), key=lambda r: r["output_throughput"])
            data.append("\n".join(f"{r['output_throughput']} {r[metric]}" for r in pts))
        plots = ", ".join(f"'-' using 1:2 with linespoints title '{n}'" for n in layouts)
        gnuplot(f"""set terminal pngcairo size 900,600 noenhanced
set output 'throughput_vs_{metric}.png'
set title '{title}: output throughput vs {label}'
set xlabel 'output tokens/s'
set ylabel '{label}'
set grid
set key outside right
plot {plots}
""" + "\ne\n".join(data) + "\ne\n", out_dir)
    # Pipeline bubble: throughput at the highest rate against micro-batches, per pp.
    pipelines = sorted({(r["tp"], r["pp"], r["dp"], r["ep"]) for r in rows if r["pp"] > 1})
    if pipelines:
        data, titles = [], []
        for key in pipelines:
            pts = [r for r in rows if (r["tp"], r["pp"], r["dp"], r["ep"]) == key]
            top = max(float(r["rate"]) for r in pts)
            pts = sorted((r for r in pts if float(r["rate"]) == top), key=lambda r: r["mb"])
            data.append("\n".join(f"{r['mb']} {r['output_throughput']}" for r in pts))
            titles.append(f"tp{key[0]} pp{key[1]} dp{key[2]} ep{key[3]}")
        plots = ", ".join(f"'-' using 1:2 with linespoints title '{t}'" for t in titles)
        gnuplot(f"""set terminal pngcairo size 900,600 noenhanced
set output 'pipeline_bubble.png'
set title '{title}: throughput vs micro-batches in flight (highest rate)'
set xlabel 'micro-batches'
set ylabel 'output tokens/s'
set logscale x 2
set grid
plot {plots}
""" + "\ne\n".join(data) + "\ne\n", out_dir)
    # Scaling with DP instances (same tp/pp/ep, highest rate).
    dps = sorted({r["dp"] for r in rows})
    if len(dps) > 2:
        top = max(float(r["rate"]) for r in rows)
        pts = sorted((r for r in rows if float(r["rate"]) == top), key=lambda r: r["dp"])
        gnuplot(f"""set terminal pngcairo size 900,600 noenhanced
set output 'dp_scaling.png'
set title '{title}: throughput and scheduler time vs DP instances'
set xlabel 'DP instances'
set ylabel 'output tokens/s'
set y2label 'coordinator scheduler us per step'
set logscale x 2
set ytics nomirror
set y2tics
set grid
plot '-' using 1:2 with linespoints title 'output tokens/s', '-' using 1:2 axes x1y2 with linespoints title 'scheduler us/step'
""" + "\n".join(f"{r['dp']} {r['output_throughput']}" for r in pts) + "\ne\n" +
                "\n".join(f"{r['dp']} {r['scheduler_us_per_step']}" for r in pts) + "\ne\n", out_dir)


def fmt(v, digits=1):
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def report(rows, args, out_dir, started):
    lines = [f"# Scaling sweep: {os.path.basename(os.path.normpath(args.model))} on {args.device}", "",
             f"Command: `{' '.join(sys.argv)}`", f"Started {started}; lattice at `{args.commit}`.",
             f"Workload: {args.num_prompts} requests, {args.input_len} in / {args.output_len} out, "
             f"ignore-eos, seed {args.seed}.", ""]
    if args.device == "sim":
        lines.append(f"Simulated hardware: `{args.sim_hardware}` (see worker/sim/cost_model.h).")
        lines.append("")
    lines += ["| layout | rate | done/failed | req/s | out tok/s | mean TTFT ms | mean TPOT ms | p99 E2EL ms | "
              "steps | overlap | mean batch | sched us/step |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layout']} | {r['rate']} | {r['completed']}/{r['failed']} | "
                     f"{fmt(r['request_throughput'], 2)} | {fmt(r['output_throughput'])} | "
                     f"{fmt(r['mean_ttft_ms'])} | {fmt(r['mean_tpot_ms'], 2)} | {fmt(r['p99_e2el_ms'])} | "
                     f"{r['steps']} | {r['overlapped_steps']} | {fmt(r['mean_batch'])} | "
                     f"{fmt(r['scheduler_us_per_step'])} |")
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in sorted(os.listdir(out_dir)) if p.endswith(".png")), ""]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lattice", default=os.environ.get("LATTICE", os.path.join(ROOT, "build/cli/lattice")))
    p.add_argument("--model", required=True)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "sim"])
    p.add_argument("--sim-hardware", default="h200")
    p.add_argument("--layouts", nargs="+", default=["tp1"])
    p.add_argument("--rates", nargs="+", default=["inf"])
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--max-concurrency", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=120, help="per point (bench serve --time-limit)")
    p.add_argument("--ready-timeout", type=float, default=300, help="seconds a server may take to load")
    p.add_argument("--serve-arg", action="append", default=[], help="extra `lattice serve` argument (repeat)")
    p.add_argument("--bench-arg", action="append", default=[], help="extra `lattice bench serve` argument")
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True)
    p.add_argument("--replot", help="redraw the plots of an existing sweep.csv into --out (no runs)")
    args = p.parse_args()
    if args.replot:
        os.makedirs(args.out, exist_ok=True)
        with open(args.replot) as f:
            rows = [{k: (float(v) if re.fullmatch(r"-?[0-9.e+-]+", v or "") and k not in ("layout", "rate") else v)
                     for k, v in r.items()} for r in csv.DictReader(f)]
        for r in rows:
            for k in ("tp", "pp", "dp", "ep", "mb", "world", "steps"):
                r[k] = int(r[k])
        plot(rows, args.out, args.title or os.path.basename(os.path.dirname(os.path.abspath(args.replot))))
        return
    os.makedirs(args.out, exist_ok=True)
    args.commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip() or os.environ.get("LATTICE_COMMIT", "unknown")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    title = args.title or f"{os.path.basename(os.path.normpath(args.model))} ({args.device})"
    rows = []
    for text in args.layouts:
        layout = parse_layout(text)
        server = Server(args, layout)
        try:
            # Each rate gets its own prompts (seed + index): with one seed the later
            # points would find the earlier points' prompts in the prefix cache.
            for rate_index, rate in enumerate(args.rates):
                path = os.path.join(args.out, f"{text.replace(':', '_')}_rate{rate}.json")
                result = run_bench(args, server.port, rate, args.seed + rate_index, path)
                row = row_for(text, layout, rate, result)
                rows.append(row)
                print(f"{text:>14} rate {rate:>5}: {row['completed']} done {row['failed']} failed, "
                      f"{row['output_throughput']:.1f} out tok/s, TPOT {row['mean_tpot_ms']:.2f} ms, "
                      f"TTFT {row['mean_ttft_ms']:.1f} ms, sched {row['scheduler_us_per_step']:.0f} us/step",
                      flush=True)
        finally:
            server.stop()
    with open(os.path.join(args.out, "sweep.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    plot(rows, args.out, title)
    report(rows, args, args.out, started)
    print(f"sweep: {len(rows)} points in {args.out}/sweep.csv, report.md and plots")


if __name__ == "__main__":
    main()
