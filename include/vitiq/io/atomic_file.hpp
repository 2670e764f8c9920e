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
#include <unistd.h>

#include "vitiq/error.hpp"

namespace vitiq::io {

/// @brief Read a whole file.
/// @param path the file
/// @return its bytes
/// @throws IoError naming the path when it cannot be opened or read
inline std::vector<std::byte> read_file(const std::filesystem::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw IoError(path.string() + ": cannot open for reading (" + std::strerror(errno) + ")");
  std::vector<std::byte> data;
  std::byte chunk[1 << 16];
  std::size_t got;
  while ((got = std::fread(chunk, 1, sizeof chunk, f)) > 0) data.insert(data.end(), chunk, chunk + got);
  const bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) throw IoError(path.string() + ": read error");
  return data;
}

/// @brief Replace `path` with `data` atomically (temporary file + fsync + rename).
///
/// The temporary file is `<path>.tmp.<pid>.<counter>` in the same directory; after the rename the
/// directory is fsynced too (best effort).
/// @param path the file to create or replace
/// @param data the complete new content
/// @throws IoError naming the path; the temporary file is removed and the old file kept.
inline void atomic_write(const std::filesystem::path& path, std::span<const std::byte> data) {
  static std::atomic<unsigned> counter{0};
  const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(::getpid()) + "." +
                                    std::to_string(counter.fetch_add(1));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError(path.string() + ": cannot write (" + std::strerror(errno) + ")");
  auto fail = [&](const char* what) {
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
