#include "store/restart_state.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"
#include "store/block_checksums.hpp"

namespace vramswap::store {
namespace {

constexpr char state_magic[16] = "vramswap-state\n";
constexpr size_t instance_bytes = 64;

// The first bytes of the file (the rest of its 4 KiB is zero).
struct Header {
  char magic[16];
  uint32_t version;
  uint32_t holds_record;  // 1 from save() until the next start takes it
  uint64_t export_bytes;
  uint64_t chunk_bytes;
  uint64_t chunk_count;
  uint64_t words_per_chunk;
  int64_t saved_unix;
  uint32_t nbd_index;
  uint32_t crc;  // CRC32C of the whole file with this field zero
  char instance[instance_bytes];
};
static_assert(sizeof(Header) <= restart_state::header_bytes);

constexpr uint64_t round_up(uint64_t value, uint64_t to) noexcept {
  return (value + to - 1) / to * to;
}

uint64_t chunk_count_of(uint64_t export_bytes, uint64_t chunk_bytes) noexcept {
  return chunk_bytes == 0 ? 0 : (export_bytes + chunk_bytes - 1) / chunk_bytes;
}

uint64_t words_per_chunk_of(uint64_t chunk_bytes) noexcept {
  const uint64_t blocks = chunk_bytes / ChunkMap::block_bytes;
  return (blocks + 63) / 64;
}

// Where the live bits start: after one byte per chunk, 8-byte aligned.
uint64_t live_offset(uint64_t chunk_count) noexcept {
  return restart_state::header_bytes + round_up(chunk_count, 8);
}

uint32_t checksum(std::span<const std::byte> file) noexcept {
  Header header{};
  std::memcpy(&header, file.data(), sizeof header);
  header.crc = 0;
  uint32_t crc =
      BlockChecksums::crc32c(0, reinterpret_cast<const std::byte*>(&header), sizeof header);
  return BlockChecksums::crc32c(crc, file.data() + sizeof header, file.size() - sizeof header);
}

std::string mib_text(uint64_t bytes) {
  return format_byte_size(bytes);
}

// Sizes that may differ by less than the rounding of format_byte_size.
std::string exact_text(uint64_t bytes) {
  return format_byte_size(bytes) + " (" + std::to_string(bytes) + " bytes)";
}

int write_all(int fd, const std::byte* data, uint64_t bytes, uint64_t position) noexcept {
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t wrote =
        pwrite(fd, data + done, bytes - done, static_cast<off_t>(position + done));
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) return errno;
    if (wrote == 0) return EIO;
    done += static_cast<uint64_t>(wrote);
  }
  return 0;
}

[[noreturn]] void refuse(int status, const std::string& line) {
  throw StartupError(status, "restart state: " + line);
}

}  // namespace

uint64_t SavedChunks::spill_bytes() const noexcept {
  uint64_t bytes = 0;
  for (size_t chunk = 0; chunk < tiers.size(); ++chunk) {
    if (tiers[chunk] != Tier::spill) continue;
    const uint64_t start = chunk * identity.chunk_bytes;
    bytes += std::min(identity.chunk_bytes, identity.export_bytes - start);
  }
  return bytes;
}

void SavedChunks::apply(ChunkMap& map) const noexcept {
  for (size_t chunk = 0; chunk < tiers.size() && chunk < map.chunk_count(); ++chunk)
    map.load_chunk(chunk, tiers[chunk], &live[chunk * words_per_chunk]);
}

namespace restart_state {

uint64_t file_bytes(uint64_t export_bytes, uint64_t chunk_bytes) noexcept {
  const uint64_t chunks = chunk_count_of(export_bytes, chunk_bytes);
  const uint64_t body = round_up(chunks, 8) + chunks * words_per_chunk_of(chunk_bytes) * 8;
  return header_bytes + round_up(body, 4096);
}

bool encode(const ChunkMap& map, std::string_view instance, uint32_t nbd_index, int64_t saved_unix,
            std::span<std::byte> out, std::string& why) {
  const uint64_t chunks = map.chunk_count();
  const uint64_t words = map.live_words_per_chunk();
  if (out.size() != file_bytes(map.export_bytes(), map.chunk_bytes()) ||
      reinterpret_cast<uintptr_t>(out.data()) % alignof(uint64_t) != 0) {
    why = "the record's buffer does not fit the export";
    return false;
  }
  std::memset(out.data(), 0, out.size());
  for (size_t chunk = 0; chunk < chunks; ++chunk) {
    const Tier tier = map.tier(chunk);
    if (tier == Tier::vram || map.motion(chunk) != Motion::resident) {
      why = "chunk " + std::to_string(chunk) + " is still " +
            (tier == Tier::vram ? "in VRAM" : "moving");
      return false;
    }
    out[header_bytes + chunk] = static_cast<std::byte>(tier);
    // The live bits land 8-byte aligned when `out` is (a page-aligned buffer).
    map.save_live(
        chunk, reinterpret_cast<uint64_t*>(out.data() + live_offset(chunks) + chunk * words * 8));
  }
  Header header{};
  std::memcpy(header.magic, state_magic, sizeof state_magic);
  header.version = format_version;
  header.holds_record = 1;
  header.export_bytes = map.export_bytes();
  header.chunk_bytes = map.chunk_bytes();
  header.chunk_count = chunks;
  header.words_per_chunk = words;
  header.saved_unix = saved_unix;
  header.nbd_index = nbd_index;
  instance.substr(0, instance_bytes - 1).copy(header.instance, instance_bytes - 1);
  std::memcpy(out.data(), &header, sizeof header);
  header.crc = checksum(out);
  std::memcpy(out.data(), &header, sizeof header);
  return true;
}

void encode_taken(std::span<std::byte> out) {
  std::memset(out.data(), 0, std::min<size_t>(out.size(), header_bytes));
  Header header{};
  std::memcpy(header.magic, state_magic, sizeof state_magic);
  header.version = format_version;
  header.holds_record = 0;
  std::memcpy(out.data(), &header, sizeof header);
}

std::optional<SavedChunks> decode(std::span<const std::byte> in, const RestartIdentity& expected,
                                  std::string& why) {
  Header header{};
  if (in.size() < header_bytes) {
    why = "the file is shorter than its header";
    return std::nullopt;
  }
  std::memcpy(&header, in.data(), sizeof header);
  if (std::memcmp(header.magic, state_magic, sizeof state_magic) != 0) {
    why = "not a vramswap restart state";
    return std::nullopt;
  }
  if (header.version != format_version) {
    why = "written in format version " + std::to_string(header.version) +
          ", this vramswapd reads " + std::to_string(format_version);
    return std::nullopt;
  }
  if (header.holds_record == 0) {
    why =
        "it holds no record: the daemon before did not stop for a restart (it crashed, or "
        "stopped for good), or its record was taken already";
    return std::nullopt;
  }
  if (header.chunk_count != chunk_count_of(header.export_bytes, header.chunk_bytes) ||
      header.words_per_chunk != words_per_chunk_of(header.chunk_bytes) ||
      in.size() != file_bytes(header.export_bytes, header.chunk_bytes)) {
    why = "its sizes do not add up (a damaged file)";
    return std::nullopt;
  }
  if (checksum(in) != header.crc) {
    why = "its checksum does not match (a damaged file)";
    return std::nullopt;
  }
  header.instance[instance_bytes - 1] = '\0';
  if (expected.instance != header.instance) {
    why = std::string("it belongs to instance '") + header.instance + "', not '" +
          expected.instance + "'";
    return std::nullopt;
  }
  if (header.chunk_bytes != expected.chunk_bytes) {
    why = "it was written with chunks of " + mib_text(header.chunk_bytes) +
          ", this vramswapd uses " + mib_text(expected.chunk_bytes);
    return std::nullopt;
  }
  if (header.export_bytes != expected.export_bytes) {
    why = "it records an export of " + exact_text(header.export_bytes) + ", the device has " +
          exact_text(expected.export_bytes);
    return std::nullopt;
  }
  SavedChunks saved;
  saved.identity = {header.instance, header.export_bytes, header.chunk_bytes};
  saved.nbd_index = header.nbd_index;
  saved.saved_unix = header.saved_unix;
  saved.words_per_chunk = header.words_per_chunk;
  const size_t chunks = header.chunk_count;
  saved.tiers.resize(chunks);
  for (size_t chunk = 0; chunk < chunks; ++chunk) {
    const auto tier = static_cast<Tier>(in[header_bytes + chunk]);
    if (tier != Tier::spill && tier != Tier::none) {
      why = "chunk " + std::to_string(chunk) + " has no valid place (a damaged file)";
      return std::nullopt;
    }
    saved.tiers[chunk] = tier;
  }
  saved.live.resize(chunks * saved.words_per_chunk);
  std::memcpy(saved.live.data(), in.data() + live_offset(chunks), saved.live.size() * 8);
  return saved;
}

std::string path_for(const std::string& spill_path) {
  return spill_path + ".state";
}

std::optional<SavedChunks> read(const std::string& path, const RestartIdentity& expected,
                                std::string& why) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    why = errno == ENOENT ? "there is none" : std::string("cannot read it: ") + strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0 || st.st_size < 0 ||
      static_cast<uint64_t>(st.st_size) >
          file_bytes(expected.export_bytes, expected.chunk_bytes) + (uint64_t{64} << 20)) {
    why = "its size does not fit any record";
    return std::nullopt;
  }
  std::vector<std::byte> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      why = std::string("cannot read it: ") + (got < 0 ? strerror(errno) : "it ends early");
      return std::nullopt;
    }
    done += static_cast<size_t>(got);
  }
  return decode(bytes, expected, why);
}

}  // namespace restart_state

RestartStateFile::RestartStateFile(UniqueFd fd, std::string path, uint64_t bytes)
    : fd_(std::move(fd)), path_(std::move(path)), buffer_(std::make_unique<SpillBuffer>(bytes)) {}

RestartStateFile RestartStateFile::open(const std::string& path, uint64_t export_bytes,
                                        uint64_t chunk_bytes) {
  const uint64_t bytes = restart_state::file_bytes(export_bytes, chunk_bytes);
  struct stat st {};
  const bool fits = ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                    static_cast<uint64_t>(st.st_size) == bytes &&
                    static_cast<uint64_t>(st.st_blocks) * 512 >= bytes;
  if (!fits) {
    // Made whole next to its place and renamed, so that save() never
    // allocates a block and a file at `path` is always complete.
    const std::string temporary = path + ".new";
    ::unlink(temporary.c_str());
    UniqueFd fd(::open(temporary.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
    if (!fd)
      refuse(exit_code::os_error, "cannot create " + temporary + ": " + strerror(errno) +
                                      "; fix the permissions of its directory");
    std::vector<std::byte> zeros(bytes);
    restart_state::encode_taken(zeros);
    int error = write_all(fd.get(), zeros.data(), bytes, 0);
    if (error == 0 && fsync(fd.get()) != 0) error = errno;
    if (error == 0 && ::rename(temporary.c_str(), path.c_str()) != 0) error = errno;
    if (error != 0) {
      ::unlink(temporary.c_str());
      refuse(error == ENOSPC ? exit_code::unavailable : exit_code::os_error,
             "cannot write " + path + ": " + strerror(error) + "; free space on its disk");
    }
    const std::string directory = std::filesystem::path(path).parent_path().string();
    UniqueFd directory_fd(
        ::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (directory_fd) fsync(directory_fd.get());
  }
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  if (!fd)
    refuse(exit_code::os_error, "cannot open " + path + " for writing: " + strerror(errno) +
                                    "; fix its permissions or remove it");
  RestartStateFile file(std::move(fd), path, bytes);
  if (const int error = file.mark_taken(); error != 0)
    refuse(exit_code::os_error, "cannot write " + path + ": " + strerror(error));
  return file;
}

int RestartStateFile::save(const ChunkMap& map, std::string_view instance, uint32_t nbd_index,
                           std::string& why) noexcept {
  const std::span<std::byte> out(buffer_->data(), buffer_->size());
  if (!restart_state::encode(map, instance, nbd_index, time(nullptr), out, why)) return EBUSY;
  if (const int error = write_all(fd_.get(), out.data(), out.size(), 0); error != 0) return error;
  return fdatasync(fd_.get()) == 0 ? 0 : errno;
}

int RestartStateFile::mark_taken() noexcept {
  const std::span<std::byte> header(buffer_->data(), restart_state::header_bytes);
  restart_state::encode_taken(header);
  if (const int error = write_all(fd_.get(), header.data(), header.size(), 0); error != 0)
    return error;
  return fdatasync(fd_.get()) == 0 ? 0 : errno;
}

}  // namespace vramswap::store
