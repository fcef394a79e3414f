#pragma once

#include <string>
#include <vector>

#include "generator/units.hpp"

namespace vramswap::generator {

// Writes `entries` under `directory` (which must exist): files mode 0644,
// symbolic links as given, parent directories created as needed. An entry
// already there is replaced, so that running the generator twice by hand
// into one directory gives the same result. Throws StartupError
// (exit_code::os_error) naming the path on the first failure.
void write_entries(const std::string& directory, const std::vector<OutputEntry>& entries);

// Removes what write_entries() may have created for `entries` (not the
// directories): after a failure half-way through one device's units, none of
// them should be left to start half a device.
void remove_entries(const std::string& directory, const std::vector<OutputEntry>& entries);

}  // namespace vramswap::generator
