#!/usr/bin/env bash
# The main job: build, start a local Lattice cluster (a coordinator and four worker
# processes, tp2 x pp2 on the CPU) serving a bundled model (a small random-weight
# Qwen3-MoE checkpoint from tests/fixtures), send it requests over gRPC with
# `lattice generate`, print the answers and the cluster status, and stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
build_dir=${LATTICE_BUILD_DIR:-build}
lattice="$build_dir/cli/lattice"
model=tests/fixtures/models/qwen3moe_sharded_f32

log=$(mktemp)
"$lattice" serve --model "$model" --tp 2 --pp 2 --host 127.0.0.1 --port 0 --kv-cache-memory 64M >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 300); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
address="127.0.0.1:$(grep -m1 -o 'listening on .*' "$log" | sed 's/.*://')"
echo "lattice serve (tp2 x pp2, 4 worker processes) is listening on $address"

# `generate` waits for the server; the workers may still be loading.
for _ in $(seq 1 100); do
  "$lattice" generate --server "$address" --prompt-ids "1" --max-tokens 1 --timeout 5 >/dev/null 2>&1 && break
  sleep 0.2
done
"$lattice" generate --server "$address" --prompt-ids "1,17,42,99,256" --prompt-ids "7,7,7" \
  --prompt-ids "300,301,302,303,304,305,306,307" --max-tokens 16 --logprobs 2 --json
echo "the same prompts through the offline engine (lattice run) for comparison:"
"$lattice" run --model "$model" --prompt-ids "1,17,42,99,256" --prompt-ids "7,7,7" \
  --prompt-ids "300,301,302,303,304,305,306,307" --max-tokens 16 --logprobs 2 --json 2>/dev/null
