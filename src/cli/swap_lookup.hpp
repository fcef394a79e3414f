#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernel/swaps.hpp"

namespace vramswap::cli {

// The /proc/swaps entry of `device` (/dev/nbdX). By device number first
// (find_swap_for_device). /proc/swaps shows the path swapon was given as
// seen from the reader's mount namespace: a daemon that ran swapon inside its
// unit's private namespace, and died, leaves an area named "/nbd0" that no
// path reaches any more. Such an entry, one whose path does not exist, is
// matched by the device's name. `exists` says whether a path exists.
std::optional<kernel::SwapEntry> find_device_swap(
    const std::vector<kernel::SwapEntry>& entries, const std::string& device,
    const std::function<bool(const std::string&)>& exists);

}  // namespace vramswap::cli
