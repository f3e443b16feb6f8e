#!/usr/bin/env bash
# The main job: build, start a local Lattice cluster (a coordinator and four worker
# processes, tp2 x pp2 on the CPU) serving the bundled model (models/stories260K:
# Karpathy's TinyStories 260K Llama), send it text prompts with `lattice generate` and
# print the stories as they stream, then the same through the offline engine, and stop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
build_dir=${LATTICE_BUILD_DIR:-build}
lattice="$build_dir/cli/lattice"
model=models/stories260K

log=$(mktemp)
"$lattice" serve --model "$model" --tp 2 --pp 2 --host 127.0.0.1 --port 0 --kv-cache-memory 64M >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 300); do
  grep -q "listening on" "$log" && break
  sleep 0.1
done
address="127.0.0.1:$(grep -m1 -o 'listening on .*' "$log" | sed 's/.*://')"
echo "lattice serve (stories260K, tp2 x pp2, 4 worker processes) is listening on $address"

# `generate` waits for the server; the workers may still be loading.
for _ in $(seq 1 100); do
  "$lattice" generate --server "$address" --prompt-ids "1" --max-tokens 1 --timeout 5 >/dev/null 2>&1 && break
  sleep 0.2
done
echo
echo "Greedy, as llama2.c's run.c prints it (the model ends its story with BOS):"
"$lattice" generate --server "$address" --prompt "Once upon a time" --max-tokens 400 --stream
for prompt in "Tom and his dog went to the park." "The little bird was sad because"; do
  echo
  echo "Sampled (temperature 0.7, seed 1, repetition penalty 1.2):"
  "$lattice" generate --server "$address" --prompt "$prompt" --max-tokens 300 --temperature 0.7 --seed 1 \
    --repetition-penalty 1.2 --stream
done
echo
echo "A chat turn (the model's chat template), sampled at temperature 0.8:"
"$lattice" generate --server "$address" --chat "Write a story about a brave cat." --max-tokens 128 \
  --temperature 0.8 --seed 7 --stream
echo
echo "The first story again through the offline engine (lattice run), for comparison:"
"$lattice" run --model "$model" --prompt "Once upon a time" --max-tokens 400 2>/dev/null
