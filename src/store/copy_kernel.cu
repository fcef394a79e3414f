// The copy kernel: one thread block per BlockMove (src/store/block_move.hpp)
// moves up to 64 KiB between mapped pinned host memory and VRAM over PCIe, so
// that one launch serves every small copy of a worker's round (the copy
// engines take one driver call and one descriptor per copy instead).
//
// The build never compiles this file: the daemon loads the PTX in
// copy_kernel.ptx through the driver API, which compiles it for the GPU at
// hand. After changing this file, regenerate the PTX with
// scripts/regenerate-ptx (needs nvcc).
//
// Host addresses can have any alignment (a write payload sits wherever the
// request stream put it), so each move uses the widest access that both of
// its addresses allow relative to each other, with byte-wise head and tail.

struct BlockMove {
  unsigned long long host;
  unsigned long long device;
  unsigned int bytes;
  unsigned int to_device;
};

template <typename Word>
__device__ void copy_words(unsigned char* dst, const unsigned char* src, unsigned int bytes) {
  Word* d = reinterpret_cast<Word*>(dst);
  const Word* s = reinterpret_cast<const Word*>(src);
  const unsigned int words = bytes / sizeof(Word);
  for (unsigned int i = threadIdx.x; i < words; i += blockDim.x) d[i] = s[i];
}

__device__ void copy_bytes(unsigned char* dst, const unsigned char* src, unsigned int bytes) {
  for (unsigned int i = threadIdx.x; i < bytes; i += blockDim.x) dst[i] = src[i];
}

extern "C" __global__ void vramswap_move_blocks(const BlockMove* moves) {
  const BlockMove m = moves[blockIdx.x];
  unsigned char* dst = reinterpret_cast<unsigned char*>(m.to_device ? m.device : m.host);
  const unsigned char* src = reinterpret_cast<const unsigned char*>(m.to_device ? m.host : m.device);
  unsigned int bytes = m.bytes;
  const unsigned long long skew =
      reinterpret_cast<unsigned long long>(dst) ^ reinterpret_cast<unsigned long long>(src);
  const unsigned int width = (skew & 15) == 0 ? 16 : (skew & 7) == 0 ? 8 : (skew & 3) == 0 ? 4 : 1;
  if (width > 1) {
    unsigned int head = (width - (reinterpret_cast<unsigned long long>(dst) & (width - 1))) & (width - 1);
    if (head > bytes) head = bytes;
    copy_bytes(dst, src, head);
    dst += head;
    src += head;
    bytes -= head;
    const unsigned int body = bytes & ~(width - 1);
    if (width == 16) copy_words<uint4>(dst, src, body);
    else if (width == 8) copy_words<unsigned long long>(dst, src, body);
    else copy_words<unsigned int>(dst, src, body);
    dst += body;
    src += body;
    bytes -= body;
  }
  copy_bytes(dst, src, bytes);
}
