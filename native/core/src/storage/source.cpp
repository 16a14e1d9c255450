// Byte sources (see source.hpp).
#include "sinr/storage/source.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sinr/storage/errors.hpp"

namespace sinr::storage {

void ByteSource::read(int64_t offset, int64_t length, uint8_t* out) const {
  if (offset < 0 || length < 0 || offset > size_ || length > size_ - offset)
    throw FormatError(name_ + ": read of " + std::to_string(length) + " bytes at " + std::to_string(offset) +
                      " lies outside the file");
  if (length) read_checked(offset, length, out);
}

std::vector<uint8_t> ByteSource::read(int64_t offset, int64_t length) const {
  if (offset < 0 || length < 0 || offset > size_ || length > size_ - offset)
    throw FormatError(name_ + ": read of " + std::to_string(length) + " bytes at " + std::to_string(offset) +
                      " lies outside the file");
  std::vector<uint8_t> out(static_cast<size_t>(length));
  if (length) read_checked(offset, length, out.data());
  return out;
}

namespace {

FileStamp stamp_of(const struct stat& st) {
  FileStamp s;
  s.size = static_cast<int64_t>(st.st_size);
#if defined(__APPLE__)
  const struct timespec& t = st.st_mtimespec;
#else
  const struct timespec& t = st.st_mtim;
#endif
  s.mtime_ns = static_cast<int64_t>(t.tv_sec) * 1000000000 + static_cast<int64_t>(t.tv_nsec);
  s.inode = static_cast<uint64_t>(st.st_ino);
  s.device = static_cast<uint64_t>(st.st_dev);
  return s;
}

}  // namespace

FileSource::FileSource(const std::string& path) {
  name_ = path;
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    const int err = errno;
    if (err == EISDIR) throw FormatError(path + ": is a folder, not a .sinr file");
    throw InvalidInputError(path + ": cannot read (" + std::strerror(err) + ")");
  }
  struct stat st;
  if (fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    throw InvalidInputError(path + ": cannot read (" + std::strerror(err) + ")");
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd_);
    throw FormatError(path + ": is a folder, not a .sinr file");
  }
  size_ = static_cast<int64_t>(st.st_size);
  stamp_ = stamp_of(st);
}

FileSource::FileSource(int fd, const std::string& name, const FileStamp& expected) : fd_(fd) {
  name_ = name;
  struct stat st;
  if (fd_ < 0 || fstat(fd_, &st) != 0 || !(stamp_of(st) == expected)) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    changed();
  }
  size_ = expected.size;
  stamp_ = expected;
}

void FileSource::changed() const {
  throw FileChangedError(name_ + ": the file changed while open (another process rewrote or truncated it); open it "
                         "again");
}

FileSource::~FileSource() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

// length bytes at offset into out, however many calls it takes: 0 when every byte was read, -1 when
// the file ends first, else the errno of a read that failed.
int pread_fully(int fd, uint8_t* out, int64_t length, int64_t offset) {
  for (int64_t done = 0; done < length;) {
    const ssize_t got = ::pread(fd, out + done, static_cast<size_t>(length - done), static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return errno;
    if (got == 0) return -1;
    done += got;
  }
  return 0;
}

}  // namespace

void FileSource::read_checked(int64_t offset, int64_t length, uint8_t* out) const {
  if (pread_fully(fd_, out, length, offset) != 0) changed();  // the file shrank
  struct stat st;
  if (fstat(fd_, &st) != 0 || !(stamp_of(st) == stamp_)) changed();
}

int pread_runs(int fd, uint8_t* out, Span<const int64_t> run_at, Span<const int64_t> run_start) {
  for (int64_t r = 0; r < run_start.size; ++r)
    if (const int status = pread_fully(fd, out + run_at[r], run_at[r + 1] - run_at[r], run_start[r]))
      return status;
  return 0;
}

MemorySource::MemorySource(std::vector<uint8_t> data, std::string name) : data_(std::move(data)) {
  size_ = static_cast<int64_t>(data_.size());
  name_ = std::move(name);
}

void MemorySource::read_checked(int64_t offset, int64_t length, uint8_t* out) const {
  std::memcpy(out, data_.data() + offset, static_cast<size_t>(length));
}

}  // namespace sinr::storage
