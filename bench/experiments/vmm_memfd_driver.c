/* A stand-in libcuda.so.1 with just the calls vramswap-vram-handover makes,
 * over memfd: an "allocation" is a memfd, its exported handle a dup of it, a
 * mapping an mmap of it. Memory lives as long as any descriptor of it does,
 * which is what a driver that keeps VRAM for an exported handle would do, so
 * on it every scenario of the probe must report "survived". It checks the
 * probe's processes and descriptor passing without a GPU; it says nothing
 * about the real driver.
 *   gcc -O2 -Wall -shared -fPIC -o /tmp/vmm/libcuda.so.1 vmm_memfd_driver.c
 *   VRAM_HANDOVER_LIBCUDA=/tmp/vmm/libcuda.so.1 vramswap-vram-handover 64 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr, Handle;
enum { OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2 };

CUresult cuInit(unsigned f) {
  (void)f;
  return OK;
}
CUresult cuDeviceGet(int* d, int o) {
  *d = o;
  return OK;
}
CUresult cuDevicePrimaryCtxRetain(void** c, int d) {
  (void)d;
  *c = (void*)1;
  return OK;
}
CUresult cuCtxSetCurrent(void* c) {
  (void)c;
  return OK;
}
CUresult cuMemGetAllocationGranularity(size_t* g, const void* p, int f) {
  (void)p;
  (void)f;
  *g = 2 << 20;
  return OK;
}
CUresult cuMemCreate(Handle* h, size_t n, const void* p, unsigned long long f) {
  (void)p;
  (void)f;
  int fd = memfd_create("fake-vram", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, (off_t)n) != 0) return OUT_OF_MEMORY;
  *h = (Handle)fd;
  return OK;
}
CUresult cuMemAddressReserve(CUdeviceptr* a, size_t n, size_t al, CUdeviceptr want,
                             unsigned long long f) {
  (void)al;
  (void)want;
  (void)f;
  void* p = mmap(NULL, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return OUT_OF_MEMORY;
  *a = (CUdeviceptr)(uintptr_t)p;
  return OK;
}
CUresult cuMemMap(CUdeviceptr a, size_t n, size_t off, Handle h, unsigned long long f) {
  (void)f;
  void* p = mmap((void*)(uintptr_t)a, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, (int)h,
                 (off_t)off);
  return p == MAP_FAILED ? INVALID_VALUE : OK;
}
CUresult cuMemSetAccess(CUdeviceptr a, size_t n, const void* d, size_t c) {
  (void)a;
  (void)n;
  (void)d;
  (void)c;
  return OK;
}
CUresult cuMemExportToShareableHandle(void* out, Handle h, int type, unsigned long long f) {
  (void)type;
  (void)f;
  int fd = dup((int)h);
  if (fd < 0) return INVALID_VALUE;
  memcpy(out, &fd, sizeof fd);
  return OK;
}
CUresult cuMemImportFromShareableHandle(Handle* h, void* os, int type) {
  (void)type;
  int fd = dup((int)(intptr_t)os);
  if (fd < 0) return INVALID_VALUE;
  *h = (Handle)fd;
  return OK;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, size_t n) {
  memcpy((void*)(uintptr_t)d, s, n);
  return OK;
}
CUresult cuMemcpyDtoH_v2(void* d, CUdeviceptr s, size_t n) {
  memcpy(d, (const void*)(uintptr_t)s, n);
  return OK;
}
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
  *free_bytes = (size_t)1 << 30;
  *total = (size_t)1 << 30;
  return OK;
}
CUresult cuMemUnmap(CUdeviceptr a, size_t n) {
  return mmap((void*)(uintptr_t)a, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
                 MAP_FAILED
             ? INVALID_VALUE
             : OK;
}
CUresult cuMemAddressFree(CUdeviceptr a, size_t n) {
  return munmap((void*)(uintptr_t)a, n) == 0 ? OK : INVALID_VALUE;
}
CUresult cuMemRelease(Handle h) {
  return close((int)h) == 0 ? OK : INVALID_VALUE;
}
CUresult cuGetErrorName(CUresult r, const char** s) {
  *s = r == OK              ? "CUDA_SUCCESS"
       : r == OUT_OF_MEMORY ? "CUDA_ERROR_OUT_OF_MEMORY"
                            : "CUDA_ERROR_INVALID_VALUE";
  return OK;
}
