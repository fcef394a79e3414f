#pragma once

#include <systemd/sd-bus.h>

#include <cstring>
#include <string>

namespace vramswap::systemd {

// An sd-bus call's error, freed however the call ended.
struct BusError {
  sd_bus_error error = SD_BUS_ERROR_NULL;
  BusError() = default;
  BusError(const BusError&) = delete;
  BusError& operator=(const BusError&) = delete;
  ~BusError() { sd_bus_error_free(&error); }
};

// An sd-bus reply, unreferenced however the call ended.
struct BusMessage {
  sd_bus_message* message = nullptr;
  BusMessage() = default;
  BusMessage(const BusMessage&) = delete;
  BusMessage& operator=(const BusMessage&) = delete;
  ~BusMessage() { sd_bus_message_unref(message); }
};

// What a failed call says: the peer's message, else the errno's text.
inline std::string describe_bus_failure(int result, const sd_bus_error& error) {
  if (error.message) return error.message;
  return std::strerror(-result);
}

}  // namespace vramswap::systemd
