// Which way of moving many small blocks between pinned host memory and VRAM
// is fastest on this machine? Experiment for the engine's design (see
// bench/NOTES.md, run 02); built and run on the GPU machine with nvcc:
//   nvcc -O2 -std=c++17 -arch=native -o copy_paths copy_paths.cu -lcuda
// Each of T threads owns a stream and a pinned buffer and moves batches of N
// blocks of B bytes to/from random places in a 4 GiB VRAM region, one sync
// (or event wait) per batch:
//   percopy   N x cuMemcpy{HtoD,DtoH}Async, then cuStreamSynchronize
//   batch     one cuMemcpyBatchAsync of N copies, then sync
//   kernel    one launch of a copy kernel that reads/writes the mapped pinned
//             buffer over PCIe (zero-copy), N descriptors, then sync
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#define CK(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { const char* n; cuGetErrorName(r_, &n); \
  std::fprintf(stderr, "%s:%d %s -> %s\n", __FILE__, __LINE__, #x, n); std::exit(1); } } while (0)

struct Desc { unsigned long long host; unsigned long long dev; unsigned int bytes; unsigned int to_device; };

// One CTA per descriptor; 16-byte vectors; host side is the mapped pinned buffer.
__global__ void move_blocks(const Desc* descs) {
  const Desc d = descs[blockIdx.x];
  const uint4* src = reinterpret_cast<const uint4*>(d.to_device ? d.host : d.dev);
  uint4* dst = reinterpret_cast<uint4*>(d.to_device ? d.dev : d.host);
  for (unsigned i = threadIdx.x; i < d.bytes / 16; i += blockDim.x) dst[i] = src[i];
}

enum Mode { percopy, batch, kernel };
static const char* mode_name[] = {"percopy", "batch", "kernel"};

CUdeviceptr vram; const size_t vram_bytes = 4ull << 30; CUcontext ctx;

double run(Mode mode, bool to_device, size_t bytes, int threads, int n, int batches,
           std::vector<double>* lat) {
  std::atomic<int> ready{0}; std::atomic<bool> go{false};
  std::vector<std::thread> ts;
  auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] {
    CK(cuCtxSetCurrent(ctx));
    CUstream s; CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    void* host; CK(cuMemHostAlloc(&host, bytes * n + 4096, CU_MEMHOSTALLOC_DEVICEMAP));
    std::memset(host, 0x5a, bytes * n);
    CUdeviceptr host_dev; CK(cuMemHostGetDevicePointer(&host_dev, host, 0));
    Desc* descs; CK(cuMemHostAlloc((void**)&descs, sizeof(Desc) * n, CU_MEMHOSTALLOC_DEVICEMAP));
    CUdeviceptr descs_dev; CK(cuMemHostGetDevicePointer(&descs_dev, descs, 0));
    std::vector<CUdeviceptr> dsts(n), srcs(n); std::vector<size_t> sizes(n, bytes);
    CUmemcpyAttributes attr{}; attr.srcAccessOrder = CU_MEMCPY_SRC_ACCESS_ORDER_STREAM;
    attr.srcLocHint.type = CU_MEM_LOCATION_TYPE_HOST; attr.dstLocHint.type = CU_MEM_LOCATION_TYPE_DEVICE;
    size_t attr_idx = 0;
    std::mt19937_64 rng(t);
    ++ready; while (!go) std::this_thread::yield();
    for (int b = 0; b < batches; ++b) {
      auto s0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i) {
        const CUdeviceptr dev = vram + (rng() % (vram_bytes / bytes)) * bytes;
        const unsigned long long h = (unsigned long long)host + i * bytes;
        if (mode == percopy) {
          if (to_device) CK(cuMemcpyHtoDAsync(dev, (void*)h, bytes, s));
          else CK(cuMemcpyDtoHAsync((void*)h, dev, bytes, s));
        } else if (mode == batch) {
          dsts[i] = to_device ? dev : (CUdeviceptr)h; srcs[i] = to_device ? (CUdeviceptr)h : dev;
        } else {
          descs[i] = Desc{host_dev + i * bytes, dev, (unsigned)bytes, to_device ? 1u : 0u};
        }
      }
      if (mode == batch) {
        if (!to_device) { std::swap(attr.srcLocHint.type, attr.dstLocHint.type); }
        CK(cuMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), n, &attr, &attr_idx, 1, s));
        if (!to_device) { std::swap(attr.srcLocHint.type, attr.dstLocHint.type); }
      } else if (mode == kernel) {
        move_blocks<<<n, 256, 0, (cudaStream_t)s>>>((const Desc*)descs_dev);
      }
      CK(cuStreamSynchronize(s));
      if (lat) lat->push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - s0).count());
    }
  });
  while (ready < threads) std::this_thread::yield();
  t0 = std::chrono::steady_clock::now(); go = true;
  for (auto& t : ts) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return double(threads) * n * batches / secs;
}

int main() {
  CK(cuInit(0)); CUdevice d; CK(cuDeviceGet(&d, 0));
  CK(cuDevicePrimaryCtxRetain(&ctx, d)); CK(cuCtxSetCurrent(ctx));
  cudaSetDevice(0); cudaFree(0);
  CK(cuMemAlloc(&vram, vram_bytes));
  for (int m = 0; m < 3; ++m) run(Mode(m), true, 4096, 2, 8, 20, nullptr);  // warm up, JIT
  std::printf("%-8s %-4s %8s %3s %4s %12s %12s\n", "mode", "dir", "bytes", "thr", "n", "ops/s", "GB/s");
  for (size_t bytes : {size_t(4096), size_t(65536), size_t(1) << 20}) {
    for (int threads : {1, 16}) {
      for (int n : {1, 32}) {
        if (bytes == (size_t(1) << 20) && n == 32 && threads == 16) continue;
        for (bool to_device : {true, false}) {
          for (int m = 0; m < 3; ++m) {
            const int batches = bytes >= (1 << 20) ? 50 : (n == 1 ? 4000 : 400);
            std::vector<double> lat;
            const double ops = run(Mode(m), to_device, bytes, threads, n, batches,
                                   threads == 1 && n == 1 ? &lat : nullptr);
            char extra[64] = "";
            if (!lat.empty()) { std::sort(lat.begin(), lat.end());
              std::snprintf(extra, sizeof extra, "  p50 %.1f us p99 %.1f us", lat[lat.size() / 2], lat[lat.size() * 99 / 100]); }
            std::printf("%-8s %-4s %8zu %3d %4d %12.0f %12.2f%s\n", mode_name[m], to_device ? "H2D" : "D2H",
                        bytes, threads, n, ops, ops * bytes / 1e9, extra);
          }
        }
      }
    }
  }
  return 0;
}
