// The .sinr container (spec §2-§4): preamble, trailer and footer, zstd frames of arrays, names and
// maps, and section tables. Every size a file declares is checked against the format's bounds
// before anything is allocated or decompressed; every failure is a typed error (errors.hpp) with
// the message scinrcodec's Python reader gives (scinrcodec/storage/container.py).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "sinr/storage/msgpack.hpp"
#include "sinr/storage/source.hpp"

namespace sinr::storage {

// The format versions this reader reads (spec §2.4 step 3, §11.2): each major version with the
// newest of its minor versions that this reader implements, and the first of its minor versions
// whose files may hold file-level sections (spec §14: format 2 gained them in 2.1, format 3.0 has
// them). A newer minor of a listed major is read too (its unknown sections and keys ignored); any
// other major is refused.
struct ReadVersion {
  int major;
  int newest_minor;
  int file_sections_since;
};
// 3.1, 3.2: the features `segments` (spec §5.5) and `cell-order-planes` (spec §5.6)
constexpr ReadVersion kReadVersions[] = {{2, 1, 1}, {3, 2, 0}};

// The entry of kReadVersions for `major`, nullptr when this reader does not read `major`.
constexpr const ReadVersion* read_version(int major) {
  for (const ReadVersion& v : kReadVersions)
    if (v.major == major) return &v;
  return nullptr;
}
constexpr int64_t kPreambleSize = 16;
constexpr int64_t kTrailerSize = 24;
constexpr uint64_t kMaxFooterBytes = uint64_t{256} << 20;
constexpr uint64_t kMaxChunkHeaderBytes = uint64_t{64} << 20;
constexpr uint64_t kMaxSectionBytes = uint64_t{1} << 40;
constexpr int64_t kMaxNameBytes = 4096;

// One zstd frame declaring its content size, at most `limit` bytes, with nothing after it.
std::vector<uint8_t> decompress_bounded(const uint8_t* data, size_t n, uint64_t limit, const std::string& what);
// One zstd frame that expands to exactly `size` bytes (at most 2**40).
std::vector<uint8_t> decompress_exact(const uint8_t* data, size_t n, uint64_t size, const std::string& what);
// The same into out, a buffer a caller keeps between frames (no fresh pages for each).
void decompress_bounded_into(const uint8_t* data, size_t n, uint64_t limit, const std::string& what,
                             std::vector<uint8_t>& out);
void decompress_exact_into(const uint8_t* data, size_t n, uint64_t size, const std::string& what,
                           std::vector<uint8_t>& out);

// A zstd array of `count` little-endian items of T (uint8/16/32/64, int16).
template <typename T>
std::vector<T> unpack_array(const uint8_t* data, size_t n, uint64_t count, const std::string& what);

// A zstd shuffled array (spec §3.3) of `count` items of T (uint32, uint64): the frame holds the items' byte
// planes, byte j of item i at offset j * count + i.
template <typename T>
std::vector<T> unpack_shuffled(const uint8_t* data, size_t n, uint64_t count, const std::string& what);
// The same into out, decompressing through raw: buffers a caller keeps from one section to the next.
template <typename T>
void unpack_shuffled_into(const uint8_t* data, size_t n, uint64_t count, const std::string& what,
                          std::vector<uint8_t>& raw, std::vector<T>& out);

// Items from their byte planes, byte j of item i read from planes[j * count + i] (spec §3.3's
// shuffled arrays; HDF5's shuffle filter stores a chunk the same way): out holds count * item_size
// bytes, the items in the planes' byte order.
void items_from_planes(const uint8_t* planes, uint64_t count, size_t item_size, uint8_t* out);

// The text of zstd names holding exactly `count` names, counted by its line breaks before anything
// is decoded (no UTF-8 character holds the byte 0x0A): what a reader that trusts the shape checks.
std::vector<uint8_t> names_text(const uint8_t* data, size_t n, uint64_t count, const std::string& what);

// zstd names: exactly `count` names, each at most kMaxNameBytes of UTF-8 without CR or LF.
std::vector<std::string> unpack_strings(const uint8_t* data, size_t n, uint64_t count, const std::string& what);

// One MessagePack map, or a map in one zstd frame of at most `limit` bytes.
msgpack::Value unpack_map(const uint8_t* data, size_t n, const std::string& what);
msgpack::Value unpack_header(const uint8_t* data, size_t n, uint64_t limit, const std::string& what);

struct SectionRef {
  std::string name;
  int64_t offset = 0;  // absolute
  int64_t length = 0;
  uint32_t crc = 0;
};
using SectionTable = std::map<std::string, SectionRef>;

// Validate [name, offset, length, crc32] entries (offsets from `base`): inside [low, high),
// unique, not overlapping (spec §3.6). `table` may be null (absent).
SectionTable parse_section_table(const msgpack::Value* table, int64_t low, int64_t high, const std::string& what,
                                 int64_t base = 0);

// CorruptFileError when two of the (offset, length, name) ranges of non-zero length overlap.
void check_disjoint(std::vector<std::tuple<int64_t, int64_t, std::string>> ranges, const std::string& what);

struct Footer {
  int major = 0, minor = 0;
  msgpack::Value content;
  int64_t offset = 0;  // where the footer starts: the body is [kPreambleSize, offset)
  uint32_t crc = 0;    // the trailer's CRC-32 of the preamble and footer, which lists every section's
};

// Preamble, trailer and footer, checked (spec §2.4); nothing else is read.
Footer read_footer(const ByteSource& source);

// Python's repr of a str, as the Python reader's messages quote names ('x').
std::string quoted(const std::string& s);

}  // namespace sinr::storage
