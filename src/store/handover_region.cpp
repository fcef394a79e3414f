#include "store/handover_region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"

namespace vramswap::store {
namespace {

// Not the spill-area record's magic: the two files mean different things.
constexpr char region_magic[16] = "vramswap-live\n";
constexpr uint64_t section_align = 4096;
constexpr uint32_t layout_chunk_map = 1u << 0;
constexpr uint32_t layout_checksums = 1u << 1;

// The first bytes of the region (the rest of its 4 KiB is zero). The magic
// and the version stay where they are in every format version, so that any
// version's header can name its own.
struct Header {
  char magic[16];
  uint32_t version;
  uint32_t crc;  // CRC32C of the whole 4 KiB header with this field zero
  uint32_t layout;
  uint32_t reserved;
  uint64_t export_bytes;
  uint64_t chunk_bytes;
  uint64_t chunk_count;
  uint64_t file_bytes;
  uint64_t chunk_map_offset;
  uint64_t chunk_map_bytes;
  uint64_t checksums_offset;
  uint64_t checksums_bytes;
  char instance[HandoverRegion::max_instance_bytes + 1];
};
static_assert(sizeof(Header) <= HandoverRegion::handover_mark_offset);
static_assert(offsetof(Header, version) == 16);

constexpr uint64_t round_up(uint64_t value, uint64_t to) noexcept {
  return (value + to - 1) / to * to;
}

bool whole_blocks(uint64_t bytes) noexcept {
  return bytes != 0 && bytes % ChunkMap::block_bytes == 0;
}

// The header a region of this identity and layout has (its CRC aside).
Header expected_header(const RestartIdentity& identity, HandoverLayout layout) noexcept {
  Header header{};
  std::memcpy(header.magic, region_magic, sizeof region_magic);
  header.version = HandoverRegion::format_version;
  header.layout =
      (layout.chunk_map ? layout_chunk_map : 0u) | (layout.checksums ? layout_checksums : 0u);
  header.export_bytes = identity.export_bytes;
  header.chunk_bytes = identity.chunk_bytes;
  header.chunk_count = (identity.export_bytes + identity.chunk_bytes - 1) / identity.chunk_bytes;
  uint64_t offset = HandoverRegion::header_bytes;
  if (layout.chunk_map) {
    header.chunk_map_offset = offset;
    header.chunk_map_bytes = round_up(
        ChunkMap::storage_bytes(identity.export_bytes, identity.chunk_bytes), section_align);
    offset += header.chunk_map_bytes;
  }
  if (layout.checksums) {
    header.checksums_offset = offset;
    header.checksums_bytes =
        round_up(BlockChecksums::storage_bytes(identity.export_bytes), section_align);
    offset += header.checksums_bytes;
  }
  header.file_bytes = offset;
  identity.instance.copy(header.instance, HandoverRegion::max_instance_bytes);
  return header;
}

// The header page but its handover mark, which changes as daemons come and go.
uint32_t header_crc(const std::byte* page) noexcept {
  Header header;
  std::memcpy(&header, page, sizeof header);
  header.crc = 0;
  const uint32_t crc =
      BlockChecksums::crc32c(0, reinterpret_cast<const std::byte*>(&header), sizeof header);
  return BlockChecksums::crc32c(crc, page + sizeof header,
                                HandoverRegion::handover_mark_offset - sizeof header);
}

// Sizes that may differ by less than the rounding of format_byte_size.
std::string exact_text(uint64_t bytes) {
  return format_byte_size(bytes) + " (" + std::to_string(bytes) + " bytes)";
}

[[noreturn]] void refuse(int status, const std::string& line) {
  throw StartupError(status, "live state: " + line);
}

// Why the header read from a region does not serve `expected`, or "".
std::string mismatch(const Header& found, const RestartIdentity& expected) {
  if (found.instance != expected.instance)
    return std::string("it belongs to instance '") + found.instance + "', not '" +
           expected.instance + "'";
  if (found.chunk_bytes != expected.chunk_bytes)
    return "it was written with chunks of " + format_byte_size(found.chunk_bytes) +
           ", this vramswapd uses " + format_byte_size(expected.chunk_bytes);
  if (expected.export_bytes != 0 && found.export_bytes != expected.export_bytes)
    return "it records an export of " + exact_text(found.export_bytes) + ", the device has " +
           exact_text(expected.export_bytes);
  return "";
}

}  // namespace

HandoverRegion HandoverRegion::create(const RestartIdentity& identity, HandoverLayout layout) {
  if (!whole_blocks(identity.export_bytes) || !whole_blocks(identity.chunk_bytes))
    refuse(exit_code::software, "the export (" + exact_text(identity.export_bytes) +
                                    ") and its chunks (" + exact_text(identity.chunk_bytes) +
                                    ") must be whole 4 KiB blocks; report this bug");
  if (identity.instance.size() > max_instance_bytes ||
      identity.instance.find('\0') != std::string::npos)
    refuse(exit_code::config, "the instance name is longer than " +
                                  std::to_string(max_instance_bytes) +
                                  " bytes; use a shorter instance name");
  Header header = expected_header(identity, layout);

  UniqueFd fd(memfd_create("vramswap-state", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) {
    const int error = errno;
    refuse(exit_code::os_error,
           std::string("cannot create its memfd: ") + strerror(error) +
               (error == EMFILE || error == ENFILE
                    ? "; raise the daemon's open file limit (LimitNOFILE=)"
                    : "; this needs memfd_create with sealing (Linux 3.17 or later)"));
  }
  // ftruncate zeroes the sections: every structure starts from zeros.
  if (ftruncate(fd.get(), static_cast<off_t>(header.file_bytes)) != 0) {
    const int error = errno;
    refuse(error == ENOMEM || error == ENOSPC ? exit_code::unavailable : exit_code::os_error,
           "cannot size its memfd to " + format_byte_size(header.file_bytes) + ": " +
               strerror(error) + "; free memory");
  }
  // Fixed in size for good: a mapping of it never faults past its end, and
  // no one can take the seals off.
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0)
    refuse(exit_code::os_error,
           std::string("cannot seal its memfd: ") + strerror(errno) + "; report this bug");
  void* base = mmap(nullptr, header.file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) {
    const int error = errno;
    refuse(error == ENOMEM || error == EAGAIN ? exit_code::unavailable : exit_code::os_error,
           "cannot map its memfd (" + format_byte_size(header.file_bytes) +
               "): " + strerror(error) + "; free memory or raise the locked memory limit");
  }
  auto* bytes = static_cast<std::byte*>(base);
  std::memcpy(bytes, &header, sizeof header);
  header.crc = header_crc(bytes);
  std::memcpy(bytes, &header, sizeof header);
  return HandoverRegion(std::move(fd), bytes, header.file_bytes, identity, layout,
                        header.chunk_map_offset, header.checksums_offset);
}

std::optional<HandoverRegion> HandoverRegion::adopt(UniqueFd fd, const RestartIdentity& expected,
                                                    std::string& why) {
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) {
    why = std::string("cannot read it: ") + strerror(errno);
    return std::nullopt;
  }
  const uint64_t size = st.st_size < 0 ? 0 : static_cast<uint64_t>(st.st_size);
  if (!S_ISREG(st.st_mode) || size < header_bytes) {
    why = "it is " + std::to_string(size) + " bytes, shorter than its header (truncated)";
    return std::nullopt;
  }
  // Read, not mapped: a refused region is never mapped at all.
  std::byte page[header_bytes];
  size_t done = 0;
  while (done < header_bytes) {
    const ssize_t got = pread(fd.get(), page + done, header_bytes - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      why = std::string("cannot read its header: ") + (got < 0 ? strerror(errno) : "it ends early");
      return std::nullopt;
    }
    done += static_cast<size_t>(got);
  }
  Header found;
  std::memcpy(&found, page, sizeof found);
  if (std::memcmp(found.magic, region_magic, sizeof region_magic) != 0) {
    why = "not a vramswap state";
    return std::nullopt;
  }
  // Before the CRC: another version may lay its header out otherwise.
  if (found.version != format_version) {
    why = "state format " + std::to_string(found.version) + ", this vramswapd reads format " +
          std::to_string(format_version) + ": the state is refused";
    return std::nullopt;
  }
  if (header_crc(page) != found.crc) {
    why = "its header's checksum does not match (a damaged state)";
    return std::nullopt;
  }
  found.instance[max_instance_bytes] = '\0';
  if (std::string line = mismatch(found, expected); !line.empty()) {
    why = std::move(line);
    return std::nullopt;
  }
  if ((found.layout & ~(layout_chunk_map | layout_checksums)) != 0 ||
      !whole_blocks(found.export_bytes) || !whole_blocks(found.chunk_bytes)) {
    why = "its header names a layout this vramswapd does not know (a damaged state)";
    return std::nullopt;
  }
  const HandoverLayout layout{(found.layout & layout_chunk_map) != 0,
                              (found.layout & layout_checksums) != 0};
  // Every size and offset is what this identity and layout make.
  Header want = expected_header(
      RestartIdentity{expected.instance, found.export_bytes, expected.chunk_bytes}, layout);
  want.crc = found.crc;
  if (std::memcmp(&want, &found, sizeof found) != 0) {
    why = "its sections do not add up (a damaged state)";
    return std::nullopt;
  }
  if (size != found.file_bytes) {
    why = "it is " + exact_text(size) + ", its header says " + exact_text(found.file_bytes) +
          " (truncated or damaged)";
    return std::nullopt;
  }
  // Unsealed, anyone holding it could shrink it under the mapping.
  const int seals = fcntl(fd.get(), F_GET_SEALS);
  if (seals < 0 || (seals & (F_SEAL_GROW | F_SEAL_SHRINK)) != (F_SEAL_GROW | F_SEAL_SHRINK)) {
    why = "it is not sealed against resizing (not a region this daemon made)";
    return std::nullopt;
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) {
    why = std::string("cannot map it: ") + strerror(errno);
    return std::nullopt;
  }
  return HandoverRegion(std::move(fd), static_cast<std::byte*>(base), size,
                        RestartIdentity{found.instance, found.export_bytes, found.chunk_bytes},
                        layout, found.chunk_map_offset, found.checksums_offset);
}

HandoverRegion::HandoverRegion(UniqueFd fd, std::byte* base, uint64_t bytes,
                               RestartIdentity identity, HandoverLayout layout,
                               uint64_t chunk_map_offset, uint64_t checksums_offset)
    : fd_(std::move(fd)),
      base_(base),
      bytes_(bytes),
      identity_(std::move(identity)),
      layout_(layout),
      chunk_map_offset_(chunk_map_offset),
      checksums_offset_(checksums_offset) {}

HandoverRegion::HandoverRegion(HandoverRegion&& other) noexcept
    : fd_(std::move(other.fd_)),
      base_(std::exchange(other.base_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      identity_(std::move(other.identity_)),
      layout_(other.layout_),
      chunk_map_offset_(other.chunk_map_offset_),
      checksums_offset_(other.checksums_offset_) {}

HandoverRegion& HandoverRegion::operator=(HandoverRegion&& other) noexcept {
  if (this != &other) {
    unmap();
    fd_ = std::move(other.fd_);
    base_ = std::exchange(other.base_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    identity_ = std::move(other.identity_);
    layout_ = other.layout_;
    chunk_map_offset_ = other.chunk_map_offset_;
    checksums_offset_ = other.checksums_offset_;
  }
  return *this;
}

HandoverRegion::~HandoverRegion() {
  unmap();
}

void HandoverRegion::unmap() noexcept {
  if (base_ != nullptr) munmap(base_, bytes_);
  base_ = nullptr;
  bytes_ = 0;
}

ChunkMapStorage HandoverRegion::chunk_map_storage() {
  if (base_ == nullptr || !layout_.chunk_map)
    throw std::logic_error("live state: the region holds no chunk map");
  return ChunkMap::storage_at(base_ + chunk_map_offset_, identity_.export_bytes,
                              identity_.chunk_bytes);
}

ChecksumStorage HandoverRegion::checksum_storage() {
  if (base_ == nullptr || !layout_.checksums)
    throw std::logic_error("live state: the region holds no checksums");
  return BlockChecksums::storage_at(base_ + checksums_offset_, identity_.export_bytes);
}

std::atomic_ref<int64_t> HandoverRegion::handover_mark() const noexcept {
  return std::atomic_ref<int64_t>(*reinterpret_cast<int64_t*>(base_ + handover_mark_offset));
}

std::optional<int64_t> HandoverRegion::handed_over_unix_ns() const noexcept {
  const int64_t mark = handover_mark().load(std::memory_order_acquire);
  if (mark == 0) return std::nullopt;
  return mark;
}

void HandoverRegion::mark_serving() noexcept {
  handover_mark().store(0, std::memory_order_release);
}

void HandoverRegion::mark_handed_over(int64_t unix_ns) noexcept {
  handover_mark().store(unix_ns, std::memory_order_release);
}

}  // namespace vramswap::store
