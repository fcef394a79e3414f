#include "generator/output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "common/unique_fd.hpp"

namespace vramswap::generator {
namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path, int error) {
  throw StartupError(exit_code::os_error, "cannot " + what + " " + path + ": " +
                                              std::strerror(error) +
                                              "; is the generator directory writable?");
}

// mkdir -p for the directories between `directory` and the entry.
void make_parents(const std::string& directory, const std::string& relative) {
  for (size_t slash = relative.find('/'); slash != std::string::npos;
       slash = relative.find('/', slash + 1)) {
    const std::string path = directory + "/" + relative.substr(0, slash);
    if (::mkdir(path.c_str(), 0755) == 0) {
      // Whatever the umask: systemd reads these as any user may.
      if (::chmod(path.c_str(), 0755) != 0) fail("set the mode of", path, errno);
    } else if (errno != EEXIST) {
      fail("create directory", path, errno);
    }
  }
}

void write_file(const std::string& path, const std::string& content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) fail("create", path, errno);
  if (::fchmod(fd.get(), 0644) != 0) fail("set the mode of", path, errno);
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t wrote = ::write(fd.get(), content.data() + done, content.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) fail("write", path, errno);
    done += static_cast<size_t>(wrote);
  }
  if (::close(fd.release()) != 0) fail("write", path, errno);
}

void write_symlink(const std::string& path, const std::string& target) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) fail("replace", path, errno);
  if (::symlink(target.c_str(), path.c_str()) != 0) fail("create link", path, errno);
}

}  // namespace

void write_entries(const std::string& directory, const std::vector<OutputEntry>& entries) {
  for (const auto& entry : entries) {
    make_parents(directory, entry.path);
    const std::string path = directory + "/" + entry.path;
    if (entry.kind == OutputEntry::Kind::file)
      write_file(path, entry.content);
    else
      write_symlink(path, entry.content);
  }
}

void remove_entries(const std::string& directory, const std::vector<OutputEntry>& entries) {
  for (const auto& entry : entries)
    ::unlink((directory + "/" + entry.path).c_str());
}

}  // namespace vramswap::generator
