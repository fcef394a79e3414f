#include "cli/observe.hpp"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/startup_error.hpp"

namespace vramswap::cli {
namespace {

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

ConfigObservation observe_config(const std::string& path) {
  ConfigObservation observed;
  observed.path = path;
  try {
    observed.report = config::load_config_report(path);
  } catch (const StartupError& error) {
    observed.unreadable = error.what();
    observed.missing = access(path.c_str(), F_OK) != 0 && errno == ENOENT;
  }
  return observed;
}

StatusDirectory read_status_directory(const std::string& directory) {
  StatusDirectory result;
  DIR* dir = opendir(directory.c_str());
  if (!dir) {
    if (errno != ENOENT) {
      result.unreadable.push_back("cannot read " + directory + ": " + std::strerror(errno) +
                                  "; run vramswap as root");
    }
    return result;
  }
  std::vector<std::string> names;
  while (const dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0) names.push_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string path = directory + "/" + name;
    auto file = status::from_json(read_whole_file(path));
    if (!file || file->instance.empty()) {
      result.unreadable.push_back(path +
                                  " is not a status file this vramswap can read (from a newer "
                                  "vramswapd?); update vramswap, or remove the file if no daemon "
                                  "writes it");
      continue;
    }
    result.files.push_back(std::move(*file));
  }
  return result;
}

}  // namespace vramswap::cli
