// The container reader's errors: one base class and the kinds the Python reader raises
// (scinrcodec.errors), with the same one-line messages, so every binding maps them one to one.
#pragma once
#include <new>
#include <stdexcept>
#include <string>

namespace sinr::storage {

// Every error the container reader throws on purpose.
class SinrError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  // The name of the matching Python class (scinrcodec.errors).
  virtual const char* kind() const noexcept { return "SinrError"; }
};

// The file is not a .sinr file, or is malformed.
class FormatError : public SinrError {
 public:
  using SinrError::SinrError;
  const char* kind() const noexcept override { return "FormatError"; }
};

// A checksum, length or internal consistency check failed: the file is damaged.
class CorruptFileError : public FormatError {
 public:
  using FormatError::FormatError;
  const char* kind() const noexcept override { return "CorruptFileError"; }
};

// The file was written by a format version this reader does not read.
class UnsupportedVersionError : public FormatError {
 public:
  using FormatError::FormatError;
  const char* kind() const noexcept override { return "UnsupportedVersionError"; }
};

// The file cannot be opened (permissions, missing).
class InvalidInputError : public SinrError {
 public:
  using SinrError::SinrError;
  const char* kind() const noexcept override { return "InvalidInputError"; }
};

// Another process rewrote or truncated the file while it was open.
class FileChangedError : public SinrError {
 public:
  using SinrError::SinrError;
  const char* kind() const noexcept override { return "FileChangedError"; }
};

// An integer index outside the matrix.
class SinrIndexError : public SinrError {
 public:
  using SinrError::SinrError;
  const char* kind() const noexcept override { return "SinrIndexError"; }
};

// A gene, cell or matrix name the file does not hold.
class SinrKeyError : public SinrError {
 public:
  using SinrError::SinrError;
  const char* kind() const noexcept override { return "SinrKeyError"; }
};

// Memory a result needs that could not be allocated: a std::bad_alloc, which every binding turns
// into its out-of-memory error, with a message that says how much the result needed.
class ResultAllocationError : public std::bad_alloc {
 public:
  explicit ResultAllocationError(std::string what) : what_(std::move(what)) {}
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  std::string what_;
};

}  // namespace sinr::storage
