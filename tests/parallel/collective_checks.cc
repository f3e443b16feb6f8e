// Closed-form collective and point-to-point checks (see collective_checks.h).
#include "tests/parallel/collective_checks.h"

#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"

namespace lattice::testing {
namespace {

class Checker {
 public:
  Checker(Communicator& comm, const CommCheckEnv& env)
      : comm_(comm), env_(env), r_(comm.rank()), n_(comm.size()) {}

  std::vector<std::string> TakeFailures() { return std::move(failures_); }

  // A host tensor of `dtype` with element i = f(i) (float types via f32), uploaded.
  Tensor Make(DType dtype, Shape shape, const std::function<double(int64_t)>& f) const {
    const int64_t numel = ShapeNumel(shape);
    Tensor host;
    if (dtype == DType::kI32) {
      host = Tensor::Empty(DType::kI32, shape);
      for (int64_t i = 0; i < numel; ++i) host.data<int32_t>()[i] = static_cast<int32_t>(f(i));
    } else {
      host = Tensor::Empty(DType::kF32, shape);
      for (int64_t i = 0; i < numel; ++i) host.data<float>()[i] = static_cast<float>(f(i));
      if (dtype != DType::kF32) host = host.To(dtype);
    }
    return env_.upload(host);
  }

  // Every element of `t` equals want(i) exactly; records the first mismatch.
  void Expect(const std::string& what, const Tensor& t,
              const std::function<double(int64_t)>& want) {
    Tensor host = env_.download(t);
    if (host.dtype() == DType::kBF16 || host.dtype() == DType::kF16) host = host.To(DType::kF32);
    const int64_t numel = host.numel();
    for (int64_t i = 0; i < numel; ++i) {
      const double got =
          host.dtype() == DType::kI32 ? host.data<int32_t>()[i] : host.data<float>()[i];
      if (got != want(i)) {
        Fail(absl::StrCat(what, " ", std::string(DTypeName(t.dtype())), ShapeToString(t.shape()),
                          ": element ", i, " = ", got, ", want ", want(i)));
        return;
      }
    }
  }

  void Fail(const std::string& message) {
    failures_.push_back(
        absl::StrCat("[", std::string(comm_.backend()), " rank ", r_, "/", n_, "] ", message));
  }

  void AllReduces() {
    const double tri = n_ * (n_ + 1) / 2.0;
    for (int64_t numel : {1, 7, 769, 70001}) {
      Tensor f = Make(DType::kF32, {numel}, [&](int64_t i) { return (r_ + 1) + (i % 13) * 0.25; });
      comm_.AllReduce(f, ReduceOp::kSum);
      Expect("AllReduce sum", f, [&](int64_t i) { return tri + n_ * (i % 13) * 0.25; });

      Tensor k = Make(DType::kI32, {numel}, [&](int64_t i) { return (r_ + 1) * 1000 + i % 977; });
      comm_.AllReduce(k, ReduceOp::kSum);
      Expect("AllReduce sum", k, [&](int64_t i) { return 1000 * tri + n_ * (i % 977); });

      auto max_value = [&](int rank, int64_t i) { return ((rank * 7 + i) % n_) * 2.0 + i % 3; };
      auto max_want = [&](int64_t i) {
        double m = max_value(0, i);
        for (int q = 1; q < n_; ++q) m = std::max(m, max_value(q, i));
        return m;
      };
      for (DType dtype : {DType::kF32, DType::kI32}) {
        Tensor m = Make(dtype, {numel}, [&](int64_t i) {
          return max_value(r_, i) - (dtype == DType::kF32 ? 0.5 : 0);
        });
        comm_.AllReduce(m, ReduceOp::kMax);
        Expect("AllReduce max", m,
               [&](int64_t i) { return max_want(i) - (dtype == DType::kF32 ? 0.5 : 0); });
      }
    }
    // A 2-d tensor and an empty one.
    Tensor t = Make(DType::kF32, {3, 5}, [&](int64_t i) { return r_ - 2.0 * i; });
    comm_.AllReduce(t);
    Expect("AllReduce sum", t, [&](int64_t i) { return tri - n_ - 2.0 * n_ * i; });
    Tensor empty = Make(DType::kF32, {0}, [](int64_t) { return 0; });
    comm_.AllReduce(empty);
    if (env_.half_reductions) {
      for (DType dtype : {DType::kBF16, DType::kF16}) {
        Tensor h = Make(dtype, {33}, [&](int64_t i) { return (r_ + 1) + i % 4; });
        comm_.AllReduce(h);
        Expect("AllReduce sum", h, [&](int64_t i) { return tri + n_ * (i % 4); });
        Tensor m = Make(dtype, {33}, [&](int64_t i) { return (r_ + i) % n_; });
        comm_.AllReduce(m, ReduceOp::kMax);
        Expect("AllReduce max", m, [&](int64_t) { return n_ - 1.0; });
      }
    }
  }

  void AllGathers() {
    for (DType dtype : {DType::kF32, DType::kI32, DType::kBF16}) {
      Tensor in = Make(dtype, {2, 3}, [&](int64_t i) { return r_ * 10 + i; });
      Tensor out = Make(dtype, {2 * n_, 3}, [](int64_t) { return -1; });
      comm_.AllGather(in, out);
      Expect("AllGather", out, [](int64_t e) { return (e / 6) * 10 + e % 6; });
    }
    Tensor in = Make(DType::kF32, {0, 3}, [](int64_t) { return 0; });
    Tensor out = Make(DType::kF32, {0, 3}, [](int64_t) { return 0; });
    comm_.AllGather(in, out);
  }

  void ReduceScatters() {
    const double tri = n_ * (n_ + 1) / 2.0;
    std::vector<DType> dtypes = {DType::kF32, DType::kI32};
    if (env_.half_reductions) dtypes.insert(dtypes.end(), {DType::kBF16, DType::kF16});
    for (DType dtype : dtypes) {
      const bool half = dtype == DType::kBF16 || dtype == DType::kF16;
      auto base = [&](int64_t e) { return half ? e % 5 + 1.0 : e + 1.0; };
      Tensor in = Make(dtype, {3 * n_, 2}, [&](int64_t e) { return (r_ + 1) * base(e); });
      Tensor out = Make(dtype, {3, 2}, [](int64_t) { return -1; });
      comm_.ReduceScatter(in, out);
      Expect("ReduceScatter", out, [&](int64_t k) { return tri * base(r_ * 6 + k); });
    }
  }

  void Broadcasts() {
    for (int root = 0; root < n_; ++root) {
      Tensor t =
          Make(DType::kF32, {4, 3}, [&](int64_t i) { return r_ == root ? root * 1000.0 + i : -7; });
      comm_.Broadcast(t, root);
      Expect(absl::StrCat("Broadcast from ", root), t,
             [&](int64_t i) { return root * 1000.0 + i; });
    }
    Tensor k = Make(DType::kI32, {5}, [&](int64_t i) { return r_ == n_ - 1 ? 77 + i : 0; });
    comm_.Broadcast(k, n_ - 1);
    Expect("Broadcast i32", k, [](int64_t i) { return 77.0 + i; });
    Tensor empty = Make(DType::kF32, {0}, [](int64_t) { return 0; });
    comm_.Broadcast(empty, 0);
  }

  // Uneven counts, zeros included; rows say (source, destination, row, column).
  void AllToAllVs() {
    auto count = [](int src, int dst) -> int64_t { return (src + 2 * dst) % 3; };
    std::vector<int64_t> send, recv;
    for (int q = 0; q < n_; ++q) {
      send.push_back(count(r_, q));
      recv.push_back(count(q, r_));
    }
    std::vector<double> in_values, want;
    for (int d = 0; d < n_; ++d) {
      for (int j = 0; j < send[d]; ++j) {
        for (int k = 0; k < 3; ++k) in_values.push_back(r_ * 10000 + d * 100 + j * 10 + k);
      }
    }
    for (int s = 0; s < n_; ++s) {
      for (int j = 0; j < recv[s]; ++j) {
        for (int k = 0; k < 3; ++k) want.push_back(s * 10000 + r_ * 100 + j * 10 + k);
      }
    }
    const int64_t in_rows = static_cast<int64_t>(in_values.size() / 3);
    const int64_t out_rows = static_cast<int64_t>(want.size() / 3);
    Tensor in = Make(DType::kF32, {in_rows, 3}, [&](int64_t i) { return in_values[i]; });
    Tensor out = Make(DType::kF32, {out_rows, 3}, [](int64_t) { return -1; });
    comm_.AllToAllV(in, send, out, recv);
    Expect("AllToAllV", out, [&](int64_t i) { return want[i]; });

    // Rank 0 sends and receives nothing at all.
    auto count0 = [](int src, int dst) -> int64_t {
      return src == 0 || dst == 0 ? 0 : 1 + (src + dst) % 2;
    };
    send.clear();
    recv.clear();
    int64_t total_in = 0, total_out = 0;
    for (int q = 0; q < n_; ++q) {
      send.push_back(count0(r_, q));
      recv.push_back(count0(q, r_));
      total_in += send.back();
      total_out += recv.back();
    }
    want.clear();
    for (int s = 0; s < n_; ++s) {
      for (int j = 0; j < recv[s]; ++j) {
        for (int k = 0; k < 2; ++k) want.push_back(s * 1000 + j * 10 + k);
      }
    }
    Tensor in0 = Make(DType::kI32, {total_in, 2}, [&](int64_t i) {
      // Row i/2 of the input: which destination's block and which row of it.
      int64_t row = i / 2;
      int64_t j = row;
      for (int d = 0; d < n_; ++d) {
        if (j < send[d]) break;
        j -= send[d];
      }
      return r_ * 1000 + j * 10 + i % 2;
    });
    Tensor out0 = Make(DType::kI32, {total_out, 2}, [](int64_t) { return -1; });
    comm_.AllToAllV(in0, send, out0, recv);
    Expect("AllToAllV with an idle rank 0", out0, [&](int64_t i) { return want[i]; });
  }

  void PointToPoint() {
    const int next = (r_ + 1) % n_, prev = (r_ + n_ - 1) % n_;
    // A ring: everyone sends before anyone receives.
    {
      Tensor out = Make(DType::kF32, {257}, [&](int64_t i) { return r_ * 10 + i % 10; });
      Tensor in = Make(DType::kF32, {257}, [](int64_t) { return -1; });
      if (env_.buffered_send) {
        comm_.Send(out, next);
        comm_.Recv(in, prev);
      } else {
        comm_.SendRecv(out, next, in, prev);
      }
      Expect("ring Send/Recv", in, [&](int64_t i) { return prev * 10 + i % 10; });
    }
    // A chain, as between pipeline stages: receive from the previous rank, add, pass on.
    {
      Tensor t = Make(DType::kF32, {16}, [](int64_t i) { return 100.0 + i; });
      if (r_ > 0) comm_.Recv(t, r_ - 1, 2);
      Expect("chain", t, [&](int64_t i) { return 100.0 + i + r_ * (r_ - 1) / 2.0; });
      Tensor next_value =
          Make(DType::kF32, {16}, [&](int64_t i) { return 100.0 + i + r_ * (r_ + 1) / 2.0; });
      if (r_ + 1 < n_) comm_.Send(next_value, r_ + 1, 2);
    }
    // SendRecv everywhere; a large i32 message and a bf16 one.
    {
      Tensor out =
          Make(DType::kI32, {1 << 20}, [&](int64_t i) { return r_ * 1000000 + i % 100000; });
      Tensor in = Make(DType::kI32, {1 << 20}, [](int64_t) { return -1; });
      comm_.SendRecv(out, next, in, prev, 4);
      Expect("ring SendRecv 4 MiB", in, [&](int64_t i) { return prev * 1000000 + i % 100000; });
      Tensor bout = Make(DType::kBF16, {6}, [&](int64_t i) { return r_ + i; });
      Tensor bin = Make(DType::kBF16, {6}, [](int64_t) { return -1; });
      comm_.SendRecv(bout, prev, bin, next, 6);
      Expect("reverse ring SendRecv bf16", bin, [&](int64_t i) { return next + i; });
    }
    // Many messages on one tag arrive in order.
    {
      constexpr int kMessages = 40;
      auto size_of = [](int m) -> int64_t { return m % 4 + 1; };
      std::vector<Tensor> received;
      if (env_.buffered_send) {
        for (int m = 0; m < kMessages; ++m) {
          comm_.Send(
              Make(DType::kF32, {size_of(m)}, [&](int64_t i) { return r_ * 1000 + m + i * 0.5; }),
              next, 3);
        }
        for (int m = 0; m < kMessages; ++m) {
          received.push_back(Make(DType::kF32, {size_of(m)}, [](int64_t) { return -1; }));
          comm_.Recv(received.back(), prev, 3);
        }
      } else {
        for (int m = 0; m < kMessages; ++m) {
          received.push_back(Make(DType::kF32, {size_of(m)}, [](int64_t) { return -1; }));
          comm_.SendRecv(
              Make(DType::kF32, {size_of(m)}, [&](int64_t i) { return r_ * 1000 + m + i * 0.5; }),
              next, received.back(), prev, 3);
        }
      }
      for (int m = 0; m < kMessages; ++m) {
        Expect(absl::StrCat("message ", m, " in order"), received[m],
               [&](int64_t i) { return prev * 1000 + m + i * 0.5; });
      }
    }
    if (!env_.buffered_send) return;
    // Tags are independent queues: receive the later tag first. Sizes differ per tag.
    {
      comm_.Send(Make(DType::kF32, {3}, [&](int64_t) { return r_ + 0.5; }), next, 5);
      comm_.Send(Make(DType::kF32, {5}, [&](int64_t) { return r_ + 0.25; }), next, 9);
      Tensor b = Make(DType::kF32, {5}, [](int64_t) { return -1; });
      Tensor a = Make(DType::kF32, {3}, [](int64_t) { return -1; });
      comm_.Recv(b, prev, 9);
      comm_.Recv(a, prev, 5);
      Expect("tag 9", b, [&](int64_t) { return prev + 0.25; });
      Expect("tag 5", a, [&](int64_t) { return prev + 0.5; });
    }
    // To self, and a message sent to the left while receiving from the right.
    {
      comm_.Send(Make(DType::kI32, {2}, [&](int64_t i) { return r_ * 3 + i; }), r_, 11);
      Tensor self = Make(DType::kI32, {2}, [](int64_t) { return -1; });
      comm_.Recv(self, r_, 11);
      Expect("Send to self", self, [&](int64_t i) { return r_ * 3.0 + i; });
      comm_.Send(Make(DType::kI32, {1}, [&](int64_t) { return r_; }), prev, 12);
      Tensor from_next = Make(DType::kI32, {1}, [](int64_t) { return -1; });
      comm_.Recv(from_next, next, 12);
      Expect("reverse ring", from_next, [&](int64_t) { return next; });
      // An empty message still arrives.
      comm_.Send(Make(DType::kF32, {0}, [](int64_t) { return 0; }), next, 13);
      Tensor empty = Make(DType::kF32, {0}, [](int64_t) { return 0; });
      comm_.Recv(empty, prev, 13);
    }
  }

  void Barriers() {
    for (int i = 0; i < 3; ++i) comm_.Barrier();
  }

  void BitIdentical() {
    constexpr int64_t kNumel = 10007;
    std::mt19937 rng(1234 + r_);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::uniform_int_distribution<int> exponent(-6, 6);
    std::vector<double> values(kNumel);
    for (double& v : values) v = normal(rng) * std::ldexp(1.0, exponent(rng)) + 1e-3;
    Tensor t = Make(DType::kF32, {kNumel}, [&](int64_t i) { return values[i]; });
    comm_.AllReduce(t);
    Tensor all = Make(DType::kF32, {n_ * kNumel}, [](int64_t) { return 0; });
    comm_.AllGather(t, all);
    const Tensor mine = env_.download(t);
    const Tensor everyone = env_.download(all);
    for (int q = 0; q < n_; ++q) {
      if (std::memcmp(static_cast<const char*>(everyone.raw_data()) + q * mine.nbytes(),
                      mine.raw_data(), mine.nbytes()) != 0) {
        Fail(absl::StrCat("AllReduce result differs in its bits from rank ", q, "'s"));
      }
    }
  }

 private:
  Communicator& comm_;
  const CommCheckEnv& env_;
  const int r_;
  const int n_;
  std::vector<std::string> failures_;
};

}  // namespace

std::vector<std::string> RunCollectiveChecks(Communicator& comm, const CommCheckEnv& env) {
  Checker checker(comm, env);
  checker.AllReduces();
  checker.AllGathers();
  checker.ReduceScatters();
  checker.Broadcasts();
  checker.AllToAllVs();
  checker.PointToPoint();
  checker.Barriers();
  checker.BitIdentical();
  return checker.TakeFailures();
}

std::vector<std::string> CheckBitIdenticalAllReduce(Communicator& comm, const CommCheckEnv& env) {
  Checker checker(comm, env);
  checker.BitIdentical();
  return checker.TakeFailures();
}

int64_t SumOverGroup(Communicator& comm, int32_t value, const CommCheckEnv& env) {
  Tensor host = Tensor::Empty(DType::kI32, {1});
  host.data<int32_t>()[0] = value;
  Tensor t = env.upload(host);
  comm.AllReduce(t);
  return env.download(t).data<int32_t>()[0];
}

}  // namespace lattice::testing
