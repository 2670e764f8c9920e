// vitiq/error.hpp -- the exception types the library throws.
//
// Every error raised on bad outside input (a file, a CSV line, a configuration field) is a
// vitiq::Error whose message names the file, line or field at fault.
#pragma once

#include <stdexcept>
#include <string>

namespace vitiq {

/// @brief Base of all vitiq exceptions; what() names the file, line or field at fault.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief A file could not be opened, read or written.
class IoError : public Error {
 public:
  using Error::Error;
};

/// @brief A file was read but its content is malformed (bad header, truncated data, ...).
class FormatError : public Error {
 public:
  using Error::Error;
};

/// @brief Weights or a checkpoint do not match the model they are loaded into.
class ConfigMismatch : public Error {
 public:
  using Error::Error;
};

}  // namespace vitiq
