// vitiq/io/atomic_file.hpp -- whole-file reads and atomic whole-file writes.
//
// Invariant: atomic_write either replaces the target with the complete new content or leaves the
// old file untouched; it writes a temporary file in the same directory, flushes it to disk and
// renames it over the target.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "vitiq/error.hpp"

namespace vitiq::io {

/// @brief Read a whole file.
/// @param path the file
/// @return its bytes
/// @throws IoError naming the path (and the system's reason) when it cannot be opened or read,
/// or is a directory
inline std::vector<std::byte> read_file(const std::filesystem::path& path) {
  const auto fail = [&](const char* what, int err) {
    throw IoError(path.string() + ": " + what + " (" + std::strerror(err) + ")");
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open for reading", errno);
  struct ::stat st {};
  if (::fstat(fd, &st) != 0) { const int err = errno; ::close(fd); fail("cannot read", err); }
  if (S_ISDIR(st.st_mode)) { ::close(fd); fail("cannot read", EISDIR); }
  std::vector<std::byte> data;
  // Regular files: one allocation of the size fstat reports; the loop still copes with a file
  // that grows or shrinks meanwhile, and with files whose size is unknown (pipes, /proc).
  data.resize(S_ISREG(st.st_mode) && st.st_size > 0 ? std::size_t(st.st_size) : std::size_t(1) << 16);
  std::size_t done = 0;
  while (true) {
    if (done == data.size()) data.resize(data.size() * 2);
    const ssize_t got = ::read(fd, data.data() + done, data.size() - done);
    if (got < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      fail("cannot read", err);
    }
    if (got == 0) break;
    done += std::size_t(got);
  }
  ::close(fd);
  data.resize(done);
  return data;
}

/// @brief Replace `path` with `data` atomically (temporary file + fsync + rename).
///
/// The temporary file is `<path>.tmp.<pid>.<counter>` in the same directory; after the rename the
/// directory is fsynced too (best effort: some file systems refuse it). The new file's mode is
/// 0644 less the umask.
/// @param path the file to create or replace
/// @param data the complete new content
/// @throws IoError naming the path; the temporary file is removed and the old file kept.
inline void atomic_write(const std::filesystem::path& path, std::span<const std::byte> data) {
  static std::atomic<unsigned> counter{0};
  const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(::getpid()) + "." +
                                    std::to_string(counter.fetch_add(1));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw IoError(path.string() + ": cannot write (cannot create " + tmp.filename().string() + ": " +
                  std::strerror(err) + ")");
  }
  const auto fail = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw IoError(path.string() + ": " + what + " (" + std::strerror(err) + ")");
  };
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write failed");
    }
    if (w == 0) {  // no progress and no error: treat as a full device rather than loop forever
      errno = ENOSPC;
      fail("write failed");
    }
    done += std::size_t(w);
  }
  if (::fsync(fd) != 0) fail("fsync failed");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw IoError(path.string() + ": close failed (" + std::strerror(err) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw IoError(path.string() + ": rename failed (" + std::strerror(err) + ")");
  }
  // Make the rename itself durable.
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

/// @brief atomic_write of text.
/// @param path the file to create or replace
/// @param text the complete new content
/// @throws IoError naming the path; the old file is kept
inline void atomic_write(const std::filesystem::path& path, std::string_view text) {
  atomic_write(path, std::span<const std::byte>(reinterpret_cast<const std::byte*>(text.data()), text.size()));
}

}  // namespace vitiq::io
