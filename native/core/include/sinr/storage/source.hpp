// Byte sources: where the container reader's bytes come from. A reader asks for byte ranges and
// never loads a whole file; a local file is read with pread (positioned reads, safe from several
// threads at once, and no mapping whose pages could vanish under a truncated file).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sinr/span.hpp"

namespace sinr::storage {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  int64_t size() const { return size_; }
  const std::string& name() const { return name_; }
  // Copy bytes [offset, offset + length) into out; FormatError if they lie outside the source or
  // cannot be read whole.
  void read(int64_t offset, int64_t length, uint8_t* out) const;
  std::vector<uint8_t> read(int64_t offset, int64_t length) const;

 protected:
  virtual void read_checked(int64_t offset, int64_t length, uint8_t* out) const = 0;
  int64_t size_ = 0;
  std::string name_;
};

// What identifies one version of a file: its size, modification time (ns), inode and device.
struct FileStamp {
  int64_t size = 0, mtime_ns = 0;
  uint64_t inode = 0, device = 0;
  bool operator==(const FileStamp& o) const {
    return size == o.size && mtime_ns == o.mtime_ns && inode == o.inode && device == o.device;
  }
};

// A local file, read with pread. Throws FormatError for a folder, InvalidInputError when the file
// cannot be opened. The file is the one opened, whatever is renamed over its path later; a change
// of its bytes in place (its stamp after a read differs from the stamp at open, or a read falls
// short) is a FileChangedError, as the Python reader's, so a read never mixes two files' bytes.
class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path);
  // Adopts `fd` (closed by the destructor, or here if this throws), which must still be the file
  // version `expected`: the Python reader hands over a duplicate of the descriptor it opened.
  FileSource(int fd, const std::string& name, const FileStamp& expected);
  ~FileSource() override;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

 protected:
  void read_checked(int64_t offset, int64_t length, uint8_t* out) const override;

 private:
  [[noreturn]] void changed() const;
  int fd_ = -1;
  FileStamp stamp_;
};

// Positioned reads of runs of an open descriptor into one buffer: run r's bytes, at file offset
// run_start[r], into out[run_at[r]: run_at[r + 1]] (run_at has one more item; the caller checks
// that the runs fit out). What a Python gather of many ranges reads in one call instead of a call
// a range (a gene of a 1e9-nonzero file: 455 runs). 0 when every byte was read, -1 when the file
// ended first, else the errno of a read that failed.
int pread_runs(int fd, uint8_t* out, Span<const int64_t> run_at, Span<const int64_t> run_start);

// Bytes already in memory (copied in).
class MemorySource : public ByteSource {
 public:
  explicit MemorySource(std::vector<uint8_t> data, std::string name = "<bytes>");

 protected:
  void read_checked(int64_t offset, int64_t length, uint8_t* out) const override;

 private:
  std::vector<uint8_t> data_;
};

}  // namespace sinr::storage
