// Dense layer out = x @ weight^T + bias. Each output is the dot product of a token row
// and a weight row, both contiguous. Large products are split across threads by output
// feature; every output is computed by the same code in the same order, so the result
// does not depend on the number of threads or on how tokens are batched.
#include <algorithm>
#include <thread>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec.h"

namespace lattice::cpu {
namespace {

// Tokens processed together, so a weight row is reused from cache this many times.
constexpr int64_t kTokenBlock = 8;
// Below this many multiply-adds, threads cost more than they save.
constexpr int64_t kMinWorkPerThread = int64_t{1} << 20;

struct LinearArgs {
  const float* x;
  const float* weight;
  const float* bias;  // null when there is none
  float* out;
  int64_t num_tokens;
  int64_t in_features;
  int64_t out_features;
};

// Computes the outputs [out_begin, out_end) of every token.
void LinearColumns(const LinearArgs& a, int64_t out_begin, int64_t out_end) {
  for (int64_t t0 = 0; t0 < a.num_tokens; t0 += kTokenBlock) {
    const int64_t t1 = std::min(t0 + kTokenBlock, a.num_tokens);
    for (int64_t o = out_begin; o < out_end; ++o) {
      const float* w_row = a.weight + o * a.in_features;
      const float b = a.bias != nullptr ? a.bias[o] : 0.0f;
      for (int64_t t = t0; t < t1; ++t) {
        const float dot = internal::Dot(a.x + t * a.in_features, w_row, a.in_features);
        a.out[t * a.out_features + o] = a.bias != nullptr ? dot + b : dot;
      }
    }
  }
}

}  // namespace

void Linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  LATTICE_CHECK(x.ndim() == 2 && weight.ndim() == 2 && out.ndim() == 2);
  LATTICE_CHECK(weight.dim(1) == x.dim(1));
  LATTICE_CHECK(out.dim(0) == x.dim(0) && out.dim(1) == weight.dim(0));
  if (bias.defined()) LATTICE_CHECK(bias.ndim() == 1 && bias.dim(0) == weight.dim(0));

  const LinearArgs args{x.data<float>(),
                        weight.data<float>(),
                        bias.defined() ? bias.data<float>() : nullptr,
                        out.data<float>(),
                        x.dim(0),
                        x.dim(1),
                        weight.dim(0)};
  const int64_t work = args.num_tokens * args.in_features * args.out_features;
  const int64_t max_threads = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t num_threads =
      std::max<int64_t>(1, std::min({work / kMinWorkPerThread, max_threads, args.out_features}));
  if (num_threads == 1) {
    LinearColumns(args, 0, args.out_features);
    return;
  }
  const int64_t chunk = (args.out_features + num_threads - 1) / num_threads;
  std::vector<std::thread> workers;
  workers.reserve(num_threads - 1);
  for (int64_t i = 1; i < num_threads; ++i) {
    const int64_t begin = std::min(i * chunk, args.out_features);
    const int64_t end = std::min(begin + chunk, args.out_features);
    workers.emplace_back([&args, begin, end] { LinearColumns(args, begin, end); });
  }
  LinearColumns(args, 0, std::min(chunk, args.out_features));
  for (std::thread& w : workers) w.join();
}

}  // namespace lattice::cpu
