#include "cuda/device.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"

namespace vramswap::cuda {
namespace {

void check(const Driver& driver, CUresult result, const char* call, int index) {
  if (result == CUDA_SUCCESS) return;
  throw StartupError(exit_code::unavailable,
                     std::string("cannot query GPU ") + std::to_string(index) + ": " + call +
                         " returned " + driver.describe(result) +
                         "; check that nvidia-smi works and dmesg for GPU errors");
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
    text.remove_suffix(1);
  }
  return text;
}

std::string lower(std::string_view text) {
  std::string result(text);
  for (char& c : result)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return result;
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && lower(text.substr(0, prefix.size())) == lower(prefix);
}

std::optional<uint32_t> parse_hex(std::string_view text, size_t max_digits) {
  if (text.empty() || text.size() > max_digits) return std::nullopt;
  uint32_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string list_of(const std::vector<DeviceInfo>& devices) {
  std::string list = "GPUs here: ";
  for (size_t i = 0; i < devices.size(); ++i) {
    if (i) list += "; ";
    list += describe_device(devices[i]);
  }
  return list;
}

[[noreturn]] void throw_selection_error(int code, std::string_view gpu, const std::string& why,
                                        const std::vector<DeviceInfo>& devices) {
  throw StartupError(code, "gpu = \"" + std::string(gpu) + "\" " + why + "; " + list_of(devices));
}

}  // namespace

std::vector<DeviceInfo> list_devices(const Driver& driver, FreeMemory free) {
  int count = 0;
  const CUresult counted = driver.cuDeviceGetCount(&count);
  if (counted != CUDA_SUCCESS) {
    throw StartupError(exit_code::unavailable, "cannot count the GPUs: cuDeviceGetCount returned " +
                                                   driver.describe(counted) +
                                                   "; check that nvidia-smi works");
  }
  if (count <= 0) {
    throw StartupError(exit_code::unavailable,
                       "no NVIDIA GPU found: the driver (" + driver.library() +
                           ") sees no CUDA device; check that nvidia-smi lists the GPU");
  }

  std::vector<DeviceInfo> devices;
  devices.reserve(static_cast<size_t>(count));
  for (int index = 0; index < count; ++index) {
    DeviceInfo info;
    info.index = index;
    CUdevice device = 0;
    check(driver, driver.cuDeviceGet(&device, index), "cuDeviceGet", index);

    char name[256] = {};
    check(driver, driver.cuDeviceGetName(name, sizeof name, device), "cuDeviceGetName", index);
    info.name = name;

    CUuuid uuid{};
    check(driver, driver.cuDeviceGetUuid(&uuid, device), "cuDeviceGetUuid", index);
    info.uuid = format_uuid(uuid);

    char bus_id[64] = {};
    check(driver, driver.cuDeviceGetPCIBusId(bus_id, sizeof bus_id, device), "cuDeviceGetPCIBusId",
          index);
    info.pci_bus_id = bus_id;

    size_t total = 0;
    check(driver, driver.cuDeviceTotalMem(&total, device), "cuDeviceTotalMem", index);
    info.total_bytes = total;

    if (free == FreeMemory::query) {
      // Free memory is a property of the running driver state, asked through
      // a context: retain the GPU's primary context (the one the daemon and
      // most programs share), ask, and let go.
      CUcontext context = nullptr;
      CUresult result = driver.cuDevicePrimaryCtxRetain(&context, device);
      if (result == CUDA_SUCCESS) {
        result = driver.cuCtxSetCurrent(context);
        size_t free_bytes = 0, total_bytes = 0;
        if (result == CUDA_SUCCESS) result = driver.cuMemGetInfo(&free_bytes, &total_bytes);
        if (result == CUDA_SUCCESS) info.free_bytes = free_bytes;
        (void)driver.cuCtxSetCurrent(nullptr);
        (void)driver.cuDevicePrimaryCtxRelease(device);
      }
      info.free_error = result;
    }
    devices.push_back(std::move(info));
  }
  return devices;
}

const DeviceInfo& select_device(const std::vector<DeviceInfo>& devices, std::string_view gpu) {
  const std::string_view wanted = trim(gpu);
  if (wanted.empty()) {
    throw_selection_error(exit_code::config, gpu,
                          "is empty: set it to a CUDA index, a GPU UUID or a PCI bus id", devices);
  }

  if (std::all_of(wanted.begin(), wanted.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    int index = -1;
    const auto [end, error] = std::from_chars(wanted.data(), wanted.data() + wanted.size(), index);
    if (error == std::errc() && end == wanted.data() + wanted.size()) {
      for (const DeviceInfo& device : devices) {
        if (device.index == index) return device;
      }
    }
    throw_selection_error(exit_code::unavailable, gpu, "is not the CUDA index of a GPU here",
                          devices);
  }

  if (starts_with_ignoring_case(wanted, "GPU-")) {
    if (wanted.size() == 4) {
      throw_selection_error(exit_code::config, gpu, "lacks the UUID after GPU-", devices);
    }
    const std::string prefix = lower(wanted);
    const DeviceInfo* found = nullptr;
    for (const DeviceInfo& device : devices) {
      if (!lower(device.uuid).starts_with(prefix)) continue;
      if (found) {
        throw_selection_error(exit_code::config, gpu,
                              "matches more than one GPU; give more of the UUID", devices);
      }
      found = &device;
    }
    if (found) return *found;
    throw_selection_error(exit_code::unavailable, gpu, "matches no GPU's UUID", devices);
  }

  if (starts_with_ignoring_case(wanted, "MIG-")) {
    throw_selection_error(exit_code::config, gpu,
                          "names a MIG instance, which vramswap does not support; name a whole GPU",
                          devices);
  }

  if (const auto address = parse_pci_bus_id(wanted)) {
    for (const DeviceInfo& device : devices) {
      if (parse_pci_bus_id(device.pci_bus_id) == address) return device;
    }
    throw_selection_error(exit_code::unavailable, gpu, "matches no GPU's PCI bus id", devices);
  }

  throw_selection_error(exit_code::config, gpu,
                        "is not a CUDA index (0), a GPU UUID (GPU-...) or a PCI bus id "
                        "(0000:01:00.0)",
                        devices);
}

std::string describe_device(const DeviceInfo& device) {
  return std::to_string(device.index) + ": " + device.name + " (" + device.uuid + ", " +
         device.pci_bus_id + ", " + format_byte_size(device.total_bytes) + ")";
}

std::string format_uuid(const CUuuid& uuid) {
  const unsigned char* b = uuid.bytes;
  char text[48];
  std::snprintf(text, sizeof text,
                "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return text;
}

std::optional<PciAddress> parse_pci_bus_id(std::string_view text) {
  text = trim(text);
  const size_t dot = text.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const size_t last_colon = text.rfind(':', dot);
  if (last_colon == std::string_view::npos) return std::nullopt;
  const size_t first_colon = text.rfind(':', last_colon == 0 ? 0 : last_colon - 1);
  const bool has_domain = first_colon != std::string_view::npos && first_colon < last_colon;

  PciAddress address;
  std::string_view bus_text = text.substr(0, last_colon);
  if (has_domain) {
    const auto domain = parse_hex(text.substr(0, first_colon), 8);
    if (!domain) return std::nullopt;
    address.domain = *domain;
    bus_text = text.substr(first_colon + 1, last_colon - first_colon - 1);
  }
  const auto bus = parse_hex(bus_text, 2);
  const auto device = parse_hex(text.substr(last_colon + 1, dot - last_colon - 1), 2);
  const auto function = parse_hex(text.substr(dot + 1), 1);
  if (!bus || !device || !function || *device > 0x1f || *function > 7) return std::nullopt;
  address.bus = *bus;
  address.device = *device;
  address.function = *function;
  return address;
}

}  // namespace vramswap::cuda
