#pragma once

// Unit names derived from paths, as systemd derives them (systemd.unit(5),
// "systemd-escape --path"): a swap unit must be named after the device it
// activates, and a device unit after its /dev path.

#include <string>
#include <string_view>

namespace vramswap::systemd {

// "/dev/vramswap/my-dev" -> "dev-vramswap-my\x2ddev": duplicate and trailing
// slashes dropped, '/' between components becomes '-', and every byte other
// than ASCII letters, digits, ':', '_' and '.' (a leading '.' included) is
// written as \xNN. "/" alone becomes "-".
std::string escape_path(std::string_view path);

// The stable link udev makes for device NAME (60-vramswap.rules).
std::string device_link(std::string_view device_name);

// "dev-vramswap-NAME.device", "dev-vramswap-NAME.swap" for that link.
std::string device_unit_name(std::string_view device_name);
std::string swap_unit_name(std::string_view device_name);

// "vramswap@NAME.service", "vramswap-mkswap@NAME.service". Instance strings
// keep '-' as it is (units use %i, not %I), and device names hold nothing
// else that needs escaping.
std::string service_unit_name(std::string_view device_name);
std::string mkswap_unit_name(std::string_view device_name);

// The backend identifier of an instance's nbd device ("vramswap/NAME"): what
// udev names /dev/vramswap/NAME after, how a new daemon finds the device of
// the one before it, and how `vramswap hibernate resume` knows that a device
// is still the instance's.
std::string backend_identifier(std::string_view instance);

}  // namespace vramswap::systemd
