#include "support/nbd_test_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>
#include <utility>

namespace vramswap::test {
namespace {

constexpr uint64_t kNbdMagic = 0x4e42444d41474943ULL;  // "NBDMAGIC"
constexpr uint64_t kIHaveOpt = 0x49484156454f5054ULL;  // "IHAVEOPT"
constexpr uint64_t kOptReplyMagic = 0x0003e889045565a9ULL;
constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kReplyMagic = 0x67446698;
constexpr uint32_t kOptGo = 7;
constexpr uint32_t kRepInfo = 3;  // anything else ends the option: ACK or an error

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}
void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    p[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
}
uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
uint32_t get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v = v << 8 | p[i];
  return v;
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v = v << 8 | p[i];
  return v;
}

}  // namespace

NbdTestClient::NbdTestClient(const std::string& socket_path)
    : fd_(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("connect " + socket_path + ": " + std::strerror(errno));
  }
  set_timeouts();
}

NbdTestClient::NbdTestClient(UniqueFd transmission_socket) : fd_(std::move(transmission_socket)) {
  set_timeouts();
}

void NbdTestClient::set_timeouts() {
  timeval tv{30, 0};  // a hung server fails the test instead of hanging it
  setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void NbdTestClient::send_raw(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = send(fd_.get(), p, size, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void NbdTestClient::read_exact(void* data, size_t size) {
  auto* p = static_cast<uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = recv(fd_.get(), p, size, 0);
    if (n == 0) throw std::runtime_error("server closed the connection");
    if (n < 0) throw std::runtime_error(std::string("recv: ") + std::strerror(errno));
    p += n;
    size -= static_cast<size_t>(n);
  }
}

bool NbdTestClient::closed_by_server(int timeout_ms) {
  pollfd pfd{fd_.get(), POLLIN, 0};
  if (poll(&pfd, 1, timeout_ms) <= 0) return false;
  char byte;
  return recv(fd_.get(), &byte, 1, MSG_DONTWAIT) == 0;
}

uint32_t NbdTestClient::negotiate(const std::string& export_name) {
  uint8_t greeting[18];
  read_exact(greeting, sizeof greeting);
  if (get64(greeting) != kNbdMagic || get64(greeting + 8) != kIHaveOpt) {
    throw std::runtime_error("not an NBD newstyle server");
  }
  uint8_t client_flags[4];
  put32(client_flags, 1 | 2);  // FIXED_NEWSTYLE | NO_ZEROES
  send_raw(client_flags, 4);

  std::vector<uint8_t> option(16 + 4 + export_name.size() + 2);
  put64(option.data(), kIHaveOpt);
  put32(option.data() + 8, kOptGo);
  put32(option.data() + 12, static_cast<uint32_t>(4 + export_name.size() + 2));
  put32(option.data() + 16, static_cast<uint32_t>(export_name.size()));
  std::memcpy(option.data() + 20, export_name.data(), export_name.size());
  put16(option.data() + 20 + export_name.size(), 0);
  send_raw(option.data(), option.size());

  for (;;) {
    uint8_t header[20];
    read_exact(header, sizeof header);
    if (get64(header) != kOptReplyMagic) throw std::runtime_error("bad option reply magic");
    const uint32_t type = get32(header + 12);
    std::vector<uint8_t> data(get32(header + 16));
    if (!data.empty()) read_exact(data.data(), data.size());
    if (type == kRepInfo && data.size() >= 12 && get16(data.data()) == 0) {
      size_ = get64(data.data() + 2);
      flags_ = get16(data.data() + 10);
    }
    if (type != kRepInfo) return type;  // ACK, or an error reply
  }
}

void NbdTestClient::send_request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset,
                                 uint32_t length) {
  uint8_t header[28];
  put32(header, kRequestMagic);
  put16(header + 4, flags);
  put16(header + 6, type);
  put64(header + 8, cookie);
  put64(header + 16, offset);
  put32(header + 24, length);
  send_raw(header, sizeof header);
}

NbdTestClient::Reply NbdTestClient::read_reply() {
  uint8_t header[16];
  read_exact(header, sizeof header);
  if (get32(header) != kReplyMagic) throw std::runtime_error("bad simple reply magic");
  return Reply{get32(header + 4), get64(header + 8)};
}

uint32_t NbdTestClient::write(uint64_t offset, const std::vector<uint8_t>& data, uint16_t flags) {
  const uint64_t cookie = next_cookie_++;
  send_request(kWrite, flags, cookie, offset, static_cast<uint32_t>(data.size()));
  send_raw(data.data(), data.size());
  const Reply reply = read_reply();
  if (reply.cookie != cookie) throw std::runtime_error("reply for another request");
  return reply.error;
}

uint32_t NbdTestClient::read(uint64_t offset, uint32_t length, std::vector<uint8_t>& data) {
  const uint64_t cookie = next_cookie_++;
  send_request(kRead, 0, cookie, offset, length);
  const Reply reply = read_reply();
  if (reply.cookie != cookie) throw std::runtime_error("reply for another request");
  data.assign(reply.error ? 0 : length, 0);
  if (!reply.error) read_exact(data.data(), data.size());
  return reply.error;
}

uint32_t NbdTestClient::simple(uint16_t type, uint64_t offset, uint32_t length, uint16_t flags) {
  const uint64_t cookie = next_cookie_++;
  send_request(type, flags, cookie, offset, length);
  const Reply reply = read_reply();
  if (reply.cookie != cookie) throw std::runtime_error("reply for another request");
  return reply.error;
}

void NbdTestClient::disconnect() {
  send_request(kDisc, 0, next_cookie_++, 0, 0);
}

std::vector<uint8_t> random_bytes(size_t size, uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::vector<uint8_t> data(size);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const uint64_t word = generator();
    std::memcpy(data.data() + i, &word, 8);
  }
  for (; i < size; ++i)
    data[i] = static_cast<uint8_t>(generator());
  return data;
}

}  // namespace vramswap::test
