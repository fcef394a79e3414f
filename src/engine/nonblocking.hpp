#pragma once

#include <cerrno>

namespace vramswap::engine {

// A non-blocking socket call that found nothing to do (not an error).
inline bool would_block(int error) noexcept {
  return error == EAGAIN || error == EWOULDBLOCK;
}

}  // namespace vramswap::engine
