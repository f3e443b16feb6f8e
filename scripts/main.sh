#!/usr/bin/env bash
# The main job: build, then generate with `lattice run` on a bundled model (a small
# random-weight Qwen3-MoE checkpoint in tests/fixtures). Later issues make this a
# served cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
build_dir=${LATTICE_BUILD_DIR:-build}
"$build_dir/cli/lattice" run --model tests/fixtures/models/qwen3moe_sharded_f32 \
  --prompt-ids "1,17,42,99,256" --prompt-ids "7,7,7" --max-tokens 16 --logprobs 2 --json
