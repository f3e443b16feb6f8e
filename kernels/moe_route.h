// Which of FusedMoe's two expert routes is faster for a call's shape (kernels/cuda/moe.cu):
// the grouped WMMA kernels, or cuBLASLt one expert at a time after a host sync. Shared by
// the CUDA kernels and the simulated device's cost model (worker/sim), which must agree.
#pragma once

namespace lattice {

// Per expert only when the experts' GEMMs are big enough to beat the grouped kernels
// despite one launch per expert and the host synchronisation, on average per expert:
//   - at least 64 rows and 8 GFLOP of gate/up + down (Mixtral at 256 decode tokens: 22);
//   - or at least 512 rows and 4 GFLOP: Qwen3-30B-A3B's 128 experts at 8192 prefill
//     tokens, whole (4.8 GFLOP: the step 1.8x faster than grouped on one GPU) but not
//     TP-sliced at tp4 (1.2 GFLOP: 17% slower served).
// At decode sizes hundreds of tiny GEMMs per layer were 10x slower than the grouped kernels.
// `rows` and `flops`: the average per expert (rows x 6 x hidden x intermediate).
inline bool MoePerExpertRouteWins(double rows, double flops) {
  return (rows >= 64 && flops >= 8e9) || (rows >= 512 && flops >= 4e9);
}

}  // namespace lattice
