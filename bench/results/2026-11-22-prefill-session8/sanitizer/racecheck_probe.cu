// Does racecheck treat mbarrier arrive (release) / try_wait.parity (acquire) as ordering
// ordinary shared-memory stores and loads? A producer warp writes a descriptor, arrives on
// "full"; four consumer warps wait on it, read, and arrive on "empty"; the producer waits on
// "empty" before it writes again. Correct by the PTX memory model.
#include <cstdio>
#include <cuda/barrier>
__device__ __forceinline__ unsigned Smem(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void Init(unsigned b, int n) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(b), "r"(n) : "memory"); }
__device__ __forceinline__ void Arrive(unsigned b) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(b) : "memory"); }
__device__ __forceinline__ void Wait(unsigned b, int parity) {
  unsigned done = 0;
  do {
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done) : "r"(b), "r"(parity) : "memory");
  } while (!done);
}
__global__ void Ptx(int* out, int rounds) {
  __shared__ alignas(8) unsigned long long bars[2];
  __shared__ int slot[9];
  const unsigned full = Smem(&bars[0]), empty = Smem(&bars[1]);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) { Init(full, 1); Init(empty, 4); asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
  __syncthreads();
  int sum = 0;
  for (int n = 0; n < rounds; ++n) {
    if (warp == 0) {
      if (lane == 0) {
        Wait(empty, (n & 1) ^ 1);
        for (int i = 0; i < 9; ++i) slot[i] = n + i;
        Arrive(full);
      }
    } else {
      Wait(full, n & 1);
      for (int i = 0; i < 9; ++i) sum += slot[i];
      __syncwarp();
      if (lane == 0) Arrive(empty);
    }
  }
  if (warp > 0) atomicAdd(out, sum);
}
// The same protocol through libcu++'s cuda::barrier (arrive returns a token; wait on it).
__global__ void Libcu(int* out, int rounds) {
  using Barrier = cuda::barrier<cuda::thread_scope_block>;
  __shared__ Barrier full, empty;
  __shared__ int slot[9];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) { init(&full, 1 + 128); init(&empty, 1 + 128); }
  __syncthreads();
  int sum = 0;
  for (int n = 0; n < rounds; ++n) {
    if (warp == 0) {
      if (lane == 0) {
        if (n > 0) empty.arrive_and_wait();
        for (int i = 0; i < 9; ++i) slot[i] = n + i;
        full.arrive_and_wait();
      }
    } else {
      full.arrive_and_wait();
      for (int i = 0; i < 9; ++i) sum += slot[i];
      if (n + 1 < rounds) empty.arrive_and_wait();
    }
  }
  if (warp > 0) atomicAdd(out, sum);
}
int main() {
  int* out; cudaMalloc(&out, 4);
  for (int k = 0; k < 2; ++k) {
    cudaMemset(out, 0, 4);
    if (k == 0) Ptx<<<1, 160>>>(out, 64); else Libcu<<<1, 160>>>(out, 64);
    int h = 0; cudaError_t e = cudaMemcpy(&h, out, 4, cudaMemcpyDeviceToHost);
    // each of 128 consumer threads sums (n + i) over n < 64, i < 9
    long want = 0; for (int n = 0; n < 64; ++n) for (int i = 0; i < 9; ++i) want += n + i;
    std::printf("%s: %s, sum %d (want %ld)\n", k == 0 ? "ptx mbarrier" : "cuda::barrier", cudaGetErrorString(e), h, want * 128);
  }
  return 0;
}
