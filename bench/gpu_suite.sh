#!/usr/bin/env bash
# The GPU checks and benchmarks of the CUDA backend, run on the GPU machine from the
# repository root with the bundle in .gpu/ (scripts/gpu-bundle.sh); results go to
# $OUT (default bench/out). Parts: tests, kernels, peers, steps, steps70b, moe, run, ...
#   bench/gpu_suite.sh tests kernels steps
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/out}
mkdir -p "$out"
bundle=${LATTICE_BUNDLE:-.gpu}
bin=$bundle/bin
export LATTICE_SOURCE_DIR=$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpus.csv" 2>&1
git_commit=$(cat $bundle/COMMIT 2>/dev/null || echo unknown)
echo "commit $git_commit" > "$out/commit.txt"
for part in "$@"; do
  case "$part" in
    tests)
      timeout 240 "$bin/cuda_tests" --gtest_brief=1 > "$out/cuda_tests.txt" 2>&1
      echo "cuda_tests exit $?" >> "$out/cuda_tests.txt"
      tail -5 "$out/cuda_tests.txt" ;;
    sanitizer)
      cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /usr/bin/compute-sanitizer 2>/dev/null | head -1)
      if [ -n "$cs" ]; then
        timeout 240 "$cs" --tool memcheck "$bin/cuda_tests" --gtest_filter='CudaOps*:CudaAttention*:CudaMoe*:CudaSampling*' \
          > "$out/sanitizer.txt" 2>&1
        echo "compute-sanitizer exit $?" >> "$out/sanitizer.txt"
      else
        echo "compute-sanitizer not installed on this machine" > "$out/sanitizer.txt"
      fi
      tail -3 "$out/sanitizer.txt" ;;
    kernels)
      timeout 300 "$bin/lattice_kernel_bench" > "$out/kernel_bench.jsonl" 2> "$out/kernel_bench.err"
      cat "$out/kernel_bench.jsonl" ;;
    peers)
      timeout 200 python3 bench/peers/sdpa_bench.py > "$out/sdpa_bench.jsonl" 2> "$out/sdpa_bench.err"
      cat "$out/sdpa_bench.jsonl"
      timeout 300 python3 bench/peers/hf_decode.py --model bench/models/llama-3.1-8b --batch-sizes 1,8,64 \
        > "$out/hf_decode_8b.jsonl" 2> "$out/hf_decode_8b.err"
      cat "$out/hf_decode_8b.jsonl"; tail -3 "$out/hf_decode_8b.err" ;;
    steps)
      timeout 300 "$bin/lattice_step_bench" --model bench/models/llama-3.1-8b --batch-sizes 1,8,64,256 \
        > "$out/step_llama8b.jsonl" 2> "$out/step_llama8b.err"
      cat "$out/step_llama8b.jsonl"; tail -3 "$out/step_llama8b.err"
      timeout 200 "$bin/lattice_step_bench" --model bench/models/llama-3.1-8b --batch-sizes 1,8 --no-cuda-graphs \
        > "$out/step_llama8b_eager.jsonl" 2> "$out/step_llama8b_eager.err"
      cat "$out/step_llama8b_eager.jsonl" ;;
    steps70b)
      timeout 400 "$bin/lattice_step_bench" --model bench/models/llama-3.1-70b --tp 2 --batch-sizes 1,8,64 \
        > "$out/step_llama70b_tp2.jsonl" 2> "$out/step_llama70b_tp2.err"
      cat "$out/step_llama70b_tp2.jsonl"; tail -3 "$out/step_llama70b_tp2.err" ;;
    moe)
      # FusedMoe's two routes on the Mixtral shape: prefill steps and eager decode steps
      # with the grouped kernels forced, then with the default (cuBLASLt per expert on
      # large calls), then decode with graphs (grouped kernels inside the graphs).
      timeout 120 "$bin/cuda_tests" --gtest_filter='CudaMoe*' --gtest_brief=1 2>&1 | tail -4
      mix=bench/models/mixtral-8x7b
      for route in grouped auto; do
        LATTICE_MOE_GEMM=$route timeout 200 "$bin/lattice_step_bench" --model $mix --prefill --context 2048 \
          --batch-sizes 1,4 --no-cuda-graphs > "$out/moe_prefill_$route.jsonl" 2> "$out/moe_prefill_$route.err"
        LATTICE_MOE_GEMM=$route timeout 200 "$bin/lattice_step_bench" --model $mix --batch-sizes 8,64,256 \
          --no-cuda-graphs --steps 10 > "$out/moe_decode_eager_$route.jsonl" 2> "$out/moe_decode_eager_$route.err"
        echo "== $route"; cat "$out/moe_prefill_$route.jsonl" "$out/moe_decode_eager_$route.jsonl"
        tail -n 2 "$out/moe_prefill_$route.err" "$out/moe_decode_eager_$route.err"
      done
      timeout 200 "$bin/lattice_step_bench" --model $mix --batch-sizes 1,8,64,256 --steps 10 \
        > "$out/moe_decode_graphs.jsonl" 2> "$out/moe_decode_graphs.err"
      echo "== graphs"; cat "$out/moe_decode_graphs.jsonl"; tail -n 2 "$out/moe_decode_graphs.err"
      timeout 100 "$bin/lattice_step_bench" --model bench/models/llama-3.1-8b --prefill --context 2048 \
        --batch-sizes 1,4 > "$out/prefill_8b.jsonl" 2> "$out/prefill_8b.err"
      echo "== 8b prefill"; cat "$out/prefill_8b.jsonl"; tail -n 2 "$out/prefill_8b.err" ;;
    run)
      for m in llama_gqa_f32 qwen3moe_sharded_f32 mistral_swa_bf16; do
        for device in cpu cuda; do
          timeout 120 "$bin/lattice" run --model tests/fixtures/models/$m --prompt-ids 1,2,3,4,5 --prompt-ids 7,8,9 \
            --max-tokens 8 --logprobs 3 --json --device $device > "$out/run_${m}_${device}.jsonl" 2>> "$out/run.err"
        done
        if diff <(python3 -c "import json,sys; [print(json.loads(l)['output_ids']) for l in open(sys.argv[1])]" "$out/run_${m}_cpu.jsonl") \
                <(python3 -c "import json,sys; [print(json.loads(l)['output_ids']) for l in open(sys.argv[1])]" "$out/run_${m}_cuda.jsonl"); then
          echo "run $m: cuda tokens == cpu tokens"
        else
          echo "run $m: DIFFERENT"
        fi
      done
      # Several GPUs: one process per GPU (NCCL inside the model) against the one-rank CPU run.
      for spec in "llama_gqa_f32:--tp 2" "llama_gqa_f32:--pp 2" "llama_gqa_f32:--dp 2" \
                  "qwen3moe_sharded_f32:--tp 2 --ep 2" "qwen3moe_sharded_f32:--dp 2 --ep 2" "mixtral_f32:--pp 2"; do
        m=${spec%%:*}; layout=${spec#*:}; tag=$(echo "$layout" | tr -d ' -')
        [ -s "$out/run_${m}_cpu.jsonl" ] || timeout 120 "$bin/lattice" run --model tests/fixtures/models/$m \
          --prompt-ids 1,2,3,4,5 --prompt-ids 7,8,9 --max-tokens 8 --logprobs 3 --json --device cpu \
          > "$out/run_${m}_cpu.jsonl" 2>> "$out/run.err"
        # shellcheck disable=SC2086
        timeout 180 "$bin/lattice" run --model tests/fixtures/models/$m --prompt-ids 1,2,3,4,5 --prompt-ids 7,8,9 \
          --max-tokens 8 --logprobs 3 --json --device cuda $layout > "$out/run_${m}_cuda_$tag.jsonl" 2>> "$out/run.err"
        echo "run $m $layout (exit $?): $(python3 - "$out/run_${m}_cpu.jsonl" "$out/run_${m}_cuda_$tag.jsonl" <<'PY'
import json, sys
cpu, gpu = ([json.loads(l) for l in open(f) if l.strip()] for f in sys.argv[1:3])
if len(cpu) != len(gpu) or any(a['output_ids'] != b['output_ids'] for a, b in zip(cpu, gpu)):
    print('DIFFERENT tokens')
else:
    err = max(abs(x[1] - y[1]) for a, b in zip(cpu, gpu)
              for ta, tb in zip(a['logprobs'], b['logprobs']) for x, y in zip(ta, tb))
    print('cuda tokens == cpu tokens, max |logprob - cpu| over the top 3 = %.1e' % err)
PY
)"
      done ;;
    serve)
      # Coordinator + GPU workers: what `lattice generate` gets equals the CPU `lattice run`.
      serve_check() {  # model, layout flags...
        local m=$1; shift
        local tag="$m${*:+ $*}"
        rm -f "$out/serve.out"
        "$bin/lattice" serve --model tests/fixtures/models/$m --host 127.0.0.1 --port 0 --device cuda "$@" \
          > "$out/serve.out" 2>> "$out/serve.err" &
        local pid=$!
        for _ in $(seq 1 100); do grep -q listening "$out/serve.out" 2>/dev/null && break; sleep 0.2; done
        local port
        port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$out/serve.out" | head -1)
        # UNAVAILABLE until every worker has loaded (NCCL groups, profiling, graph capture).
        local code=1
        for _ in $(seq 1 120); do
          timeout 90 "$bin/lattice" generate --server 127.0.0.1:$port --prompt-ids 1,2,3,4,5 --prompt-ids 7,8,9 \
            --max-tokens 8 --json > "$out/serve_generate.jsonl" 2> "$out/generate.err"
          code=$?
          grep -q UNAVAILABLE "$out/generate.err" || break
          sleep 0.5
        done
        cat "$out/generate.err" >> "$out/serve.err"
        echo "generate ($tag) exit $code" >> "$out/serve.err"
        timeout 60 "$bin/lattice" run --model tests/fixtures/models/$m --prompt-ids 1,2,3,4,5 --prompt-ids 7,8,9 \
          --max-tokens 8 --json > "$out/serve_run_cpu.jsonl" 2>> "$out/serve.err"
        kill -TERM $pid; wait $pid; echo "serve ($tag) exit $?" >> "$out/serve.err"
        if diff <(python3 -c "import json,sys; [print(json.loads(l)['output_ids']) for l in open(sys.argv[1])]" "$out/serve_generate.jsonl") \
                <(python3 -c "import json,sys; [print(json.loads(l)['output_ids']) for l in open(sys.argv[1])]" "$out/serve_run_cpu.jsonl") \
                > /dev/null 2>&1; then
          echo "serve $tag on cuda: generate tokens == cpu run tokens"
        else
          echo "serve $tag on cuda: DIFFERENT"; tail -20 "$out/serve.err"
        fi
      }
      serve_check llama_gqa_f32
      serve_check llama_gqa_f32 --tp 2
      serve_check llama_gqa_f32 --pp 2
      serve_check qwen3moe_sharded_f32 --tp 2 --ep 2
      serve_check mixtral_f32 --pp 2 ;;
    offline8b|offline-mixtral)
      # `lattice bench offline` on one GPU: 128 in/128 out and 1000/1000 (issue 6).
      model=bench/models/llama-3.1-8b; tag=8b
      [ "$part" = offline-mixtral ] && { model=bench/models/mixtral-8x7b; tag=mixtral; }
      for shape in "1000 128 128" "500 1000 1000"; do
        set -- $shape
        timeout 300 "$bin/lattice" bench offline --model $model --device cuda --load-format dummy \
          --max-num-batched-tokens 8192 --num-prompts $1 --random-input-len $2 --random-output-len $3 --ignore-eos \
          --result-json "$out/offline_${tag}_$2x$3.json" > "$out/offline_${tag}_$2x$3.txt" 2>&1
        echo "offline $tag $2/$3: $(grep Throughput "$out/offline_${tag}_$2x$3.txt" || tail -2 "$out/offline_${tag}_$2x$3.txt")"
      done ;;
    hfoffline)
      timeout 400 python3 bench/peers/hf_offline.py --model bench/models/llama-3.1-8b --num-prompts 256 \
        --input-len 128 --output-len 128 --batch-size 64 > "$out/hf_offline_8b.json" 2> "$out/hf_offline_8b.err"
      cat "$out/hf_offline_8b.json"; tail -2 "$out/hf_offline_8b.err" ;;
    serve8b|serve-mixtral)
      # Serving latency at three rates on 1 GPU (tp1) and 2 GPUs (tp2, pp2, dp2; Mixtral: tp2, ep2 as tp2ep2, pp2).
      model=bench/models/llama-3.1-8b; layouts="tp1 tp2 pp2 dp2"
      [ "$part" = serve-mixtral ] && { model=bench/models/mixtral-8x7b; layouts="tp1 tp2 tp2ep2 pp2"; }
      LATTICE_COMMIT=$git_commit timeout 580 python3 bench/scaling/sweep.py --lattice "$bin/lattice" --model $model \
        --device cuda --serve-arg=--load-format --serve-arg=dummy --serve-arg=--max-num-batched-tokens \
        --serve-arg=8192 --layouts $layouts --rates 8 32 inf --num-prompts 200 --input-len 512 --output-len 128 \
        --time-limit 60 --out "/tmp/$part" 2>&1 | tail -20
      cp "/tmp/$part/sweep.csv" "$out/${part}.csv"; cp "/tmp/$part/report.md" "$out/${part}.md"; tail -5 /tmp/$part/serve.log ;;
    scale4)
      # Issue 7 on 4 GPUs: the 70B shape at tp4, pp4, tp2pp2; Mixtral at tp4, tp4ep4, dp2tp2ep4;
      # Qwen3-30B-A3B at tp4ep4, tp4 and dp4ep4 (DP attention); SCALE4_SPECS="model:layouts;..."
      # picks others. Each sweep's CSV lands in $out as scale4_<model>.csv.
      specs=${SCALE4_SPECS:-"llama-3.1-70b:tp4 pp4 tp2pp2;mixtral-8x7b:tp4 tp4ep4 dp2tp2ep4;qwen3-30b-a3b:tp4ep4 tp4 dp4ep4"}
      IFS=';' read -ra spec_list <<< "$specs"
      for spec in "${spec_list[@]}"; do
        name=${spec%%:*}; layouts=${spec#*:}
        LATTICE_COMMIT=$git_commit timeout 300 python3 bench/scaling/sweep.py --lattice "$bin/lattice" \
          --model bench/models/$name --device cuda --serve-arg=--load-format --serve-arg=dummy \
          --serve-arg=--max-num-batched-tokens --serve-arg=8192 --layouts $layouts --rates 16 inf \
          --num-prompts 200 --input-len 512 --output-len 128 --time-limit 60 --out "/tmp/scale4-$name" 2>&1 \
          | grep -v -i "warning\|gnuplot"
        cp "/tmp/scale4-$name/sweep.csv" "$out/scale4_$name.csv"; tail -3 "/tmp/scale4-$name/serve.log"
      done ;;
  esac
done
