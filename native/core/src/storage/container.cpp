// The .sinr container (see container.hpp; the Python twin is scinrcodec/storage/container.py).
#include "sinr/storage/container.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>

#include "sinr/crc32.hpp"
#include "sinr/storage/errors.hpp"

namespace sinr::storage {

namespace {

const uint8_t kMagic[8] = {0x89, 'S', 'I', 'N', 'R', '\r', '\n', 0x1a};
const uint8_t kEndMagic[8] = {'S', 'I', 'N', 'R', '-', 'E', 'N', 'D'};

uint64_t le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct DCtxFree {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

}  // namespace

std::string quoted(const std::string& s) {
  // Python's repr of a str: single quotes unless the text holds one and no double quote.
  const bool single = s.find('\'') == std::string::npos || s.find('"') != std::string::npos;
  const char q = single ? '\'' : '"';
  std::string out(1, q);
  for (const char c : s) {
    if (c == '\\' || c == q) out += '\\';
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out + q;
}

std::vector<uint8_t> decompress_bounded(const uint8_t* data, size_t n, uint64_t limit, const std::string& what) {
  std::vector<uint8_t> out;
  decompress_bounded_into(data, n, limit, what, out);
  return out;
}

void decompress_bounded_into(const uint8_t* data, size_t n, uint64_t limit, const std::string& what,
                             std::vector<uint8_t>& out) {
  if (n < 4 || le(data, 4) != 0xFD2FB528u) throw CorruptFileError(what + " is not a zstd frame");
  const unsigned long long declared = ZSTD_getFrameContentSize(data, n);
  if (declared == ZSTD_CONTENTSIZE_ERROR) throw CorruptFileError(what + " is not a zstd frame");
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN) throw CorruptFileError(what + " is a zstd frame without its content size");
  const uint64_t size = declared;
  if (size > limit)
    throw CorruptFileError(what + " declares " + std::to_string(size) + " bytes, more than the " +
                           std::to_string(limit) + " it may hold");
  const size_t frame = ZSTD_findFrameCompressedSize(data, n);
  if (ZSTD_isError(frame) || frame != n) throw CorruptFileError(what + " is not exactly one complete zstd frame");
  if (ZSTD_getDictID_fromFrame(data, n) != 0) throw CorruptFileError(what + " is corrupt (it needs a dictionary)");
  out.resize(static_cast<size_t>(size) + (size ? 0 : 1));
  // One context per thread, kept: creating one costs more than decompressing a chunk's small sections
  // (10-60 us a section against 2-20); each frame starts it afresh (ZSTD_decompressDCtx).
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxFree> ctx(ZSTD_createDCtx());
  if (!ctx) throw std::bad_alloc();
  const size_t got = ZSTD_decompressDCtx(ctx.get(), out.data(), static_cast<size_t>(size), data, n);
  if (ZSTD_isError(got)) throw CorruptFileError(what + " is corrupt (" + ZSTD_getErrorName(got) + ")");
  if (got != size) throw CorruptFileError(what + " is not exactly one complete zstd frame");
  out.resize(static_cast<size_t>(size));
}

std::vector<uint8_t> decompress_exact(const uint8_t* data, size_t n, uint64_t size, const std::string& what) {
  std::vector<uint8_t> raw;
  decompress_exact_into(data, n, size, what, raw);
  return raw;
}

void decompress_exact_into(const uint8_t* data, size_t n, uint64_t size, const std::string& what,
                           std::vector<uint8_t>& raw) {
  if (size > kMaxSectionBytes) throw CorruptFileError(what + " declares an impossible size");
  decompress_bounded_into(data, n, size, what, raw);
  if (raw.size() != size)
    throw CorruptFileError(what + " holds " + std::to_string(raw.size()) + " bytes, expected " + std::to_string(size));
}

namespace {

// The count * sizeof(T) bytes of an array's one zstd frame into raw, the size checked before
// decompressing.
template <typename T>
void array_bytes(const uint8_t* data, size_t n, uint64_t count, const std::string& what, std::vector<uint8_t>& raw) {
  if (count > kMaxSectionBytes / sizeof(T))
    throw CorruptFileError(what + " declares an impossible length " + std::to_string(count));
  decompress_exact_into(data, n, count * sizeof(T), what, raw);
}

// The items whose byte planes raw holds (byte j of item i at j * count + i).
template <typename T>
void items_of_planes(const std::vector<uint8_t>& raw, uint64_t count, std::vector<T>& out) {
  static_assert(std::is_unsigned<T>::value, "byte planes of unsigned items");
  out.resize(static_cast<size_t>(count));
  const uint8_t* planes[sizeof(T)];
  for (size_t j = 0; j < sizeof(T); ++j) planes[j] = raw.data() + j * out.size();
  for (size_t i = 0; i < out.size(); ++i) {  // each item once, its bytes from every plane
    T item = 0;
    for (size_t j = 0; j < sizeof(T); ++j) item |= static_cast<T>(static_cast<T>(planes[j][i]) << (8 * j));
    out[i] = item;
  }
}

}  // namespace

template <typename T>
std::vector<T> unpack_array(const uint8_t* data, size_t n, uint64_t count, const std::string& what) {
  thread_local std::vector<uint8_t> raw;  // kept: a chunk's load unpacks about ten arrays
  array_bytes<T>(data, n, count, what, raw);
  std::vector<T> out(static_cast<size_t>(count));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (!out.empty()) std::memcpy(out.data(), raw.data(), out.size() * sizeof(T));  // the stored order is the host's
#else
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<T>(le(raw.data() + i * sizeof(T), static_cast<int>(sizeof(T))));
#endif
  if (raw.capacity() > (size_t{4} << 20)) std::vector<uint8_t>().swap(raw);
  return out;
}

template std::vector<uint8_t> unpack_array<uint8_t>(const uint8_t*, size_t, uint64_t, const std::string&);
template std::vector<int16_t> unpack_array<int16_t>(const uint8_t*, size_t, uint64_t, const std::string&);
template std::vector<uint32_t> unpack_array<uint32_t>(const uint8_t*, size_t, uint64_t, const std::string&);
template std::vector<uint64_t> unpack_array<uint64_t>(const uint8_t*, size_t, uint64_t, const std::string&);

template <typename T>
std::vector<T> unpack_shuffled(const uint8_t* data, size_t n, uint64_t count, const std::string& what) {
  std::vector<uint8_t> raw;
  std::vector<T> out;
  unpack_shuffled_into(data, n, count, what, raw, out);
  return out;
}

template <typename T>
void unpack_shuffled_into(const uint8_t* data, size_t n, uint64_t count, const std::string& what,
                          std::vector<uint8_t>& raw, std::vector<T>& out) {
  array_bytes<T>(data, n, count, what, raw);
  items_of_planes(raw, count, out);
}

template std::vector<uint32_t> unpack_shuffled<uint32_t>(const uint8_t*, size_t, uint64_t, const std::string&);
template std::vector<uint64_t> unpack_shuffled<uint64_t>(const uint8_t*, size_t, uint64_t, const std::string&);
template void unpack_shuffled_into<uint64_t>(const uint8_t*, size_t, uint64_t, const std::string&,
                                             std::vector<uint8_t>&, std::vector<uint64_t>&);

namespace {

template <size_t Size>
void gather_planes(const uint8_t* planes, uint64_t count, uint8_t* out) {
  for (uint64_t i = 0; i < count; ++i)
    for (size_t j = 0; j < Size; ++j) out[i * Size + j] = planes[j * count + i];
}

}  // namespace

void items_from_planes(const uint8_t* planes, uint64_t count, size_t item_size, uint8_t* out) {
  switch (item_size) {  // the sizes of numeric items, unrolled; any other the plain way
    case 2: return gather_planes<2>(planes, count, out);
    case 4: return gather_planes<4>(planes, count, out);
    case 8: return gather_planes<8>(planes, count, out);
    default:
      for (uint64_t i = 0; i < count; ++i)
        for (size_t j = 0; j < item_size; ++j) out[i * item_size + j] = planes[j * count + i];
  }
}

std::vector<uint8_t> names_text(const uint8_t* data, size_t n, uint64_t count, const std::string& what) {
  std::vector<uint8_t> raw = decompress_bounded(data, n, count * (kMaxNameBytes + 1), what);
  if (count == 0 && !raw.empty()) throw CorruptFileError(what + " holds names for no entries");
  const uint64_t held = count ? static_cast<uint64_t>(std::count(raw.begin(), raw.end(), uint8_t{'\n'})) + 1 : 0;
  if (held != count)
    throw CorruptFileError(what + " holds " + std::to_string(held) + " names, expected " + std::to_string(count));
  return raw;
}

std::vector<std::string> unpack_strings(const uint8_t* data, size_t n, uint64_t count, const std::string& what) {
  const std::vector<uint8_t> raw = names_text(data, n, count, what);
  const char* text = reinterpret_cast<const char*>(raw.data());
  if (!msgpack::valid_utf8(text, raw.size())) throw CorruptFileError(what + " is not valid UTF-8");
  std::vector<std::string> values;
  if (count) {
    size_t start = 0;
    for (size_t i = 0; i <= raw.size(); ++i) {
      if (i == raw.size() || text[i] == '\n') {
        values.emplace_back(text + start, i - start);
        start = i + 1;
      }
    }
  }
  if (std::memchr(text, '\r', raw.size())) throw CorruptFileError(what + " holds a carriage return");
  for (const auto& v : values)
    if (static_cast<int64_t>(v.size()) > kMaxNameBytes)
      throw CorruptFileError(what + " holds a name longer than " + std::to_string(kMaxNameBytes) + " bytes");
  return values;
}

msgpack::Value unpack_map(const uint8_t* data, size_t n, const std::string& what) {
  msgpack::Value value;
  try {
    value = msgpack::parse(data, n);
  } catch (const msgpack::ParseError& e) {
    throw CorruptFileError(what + " is unreadable (" + e.what() + ")");
  }
  if (value.type != msgpack::Value::kMap) throw CorruptFileError(what + " is not a map");
  return value;
}

msgpack::Value unpack_header(const uint8_t* data, size_t n, uint64_t limit, const std::string& what) {
  const std::vector<uint8_t> raw = decompress_bounded(data, n, limit, what);
  return unpack_map(raw.data(), raw.size(), what);
}

SectionTable parse_section_table(const msgpack::Value* table, int64_t low, int64_t high, const std::string& what,
                                 int64_t base) {
  if (!table || table->type != msgpack::Value::kArray) throw CorruptFileError(what + " has no section table");
  SectionTable sections;
  std::vector<std::tuple<int64_t, int64_t, std::string>> ranges;
  for (const auto& entry : table->items) {
    bool ok = entry.type == msgpack::Value::kArray && entry.items.size() == 4 &&
              entry.items[0].type == msgpack::Value::kStr;
    for (int i = 1; ok && i < 4; ++i) ok = entry.items[i].int_in(0, UINT64_MAX);
    if (ok) ok = entry.items[3].as_uint64() <= 0xFFFFFFFFu;
    if (!ok) throw CorruptFileError(what + ": malformed section table entry");
    const std::string& name = entry.items[0].text;
    const unsigned __int128 offset = static_cast<unsigned __int128>(entry.items[1].as_uint64()) + base;
    const unsigned __int128 length = entry.items[2].as_uint64();
    if (sections.count(name)) throw CorruptFileError(what + ": section " + quoted(name) + " appears twice");
    if (offset < static_cast<unsigned __int128>(low) || offset + length > static_cast<unsigned __int128>(high))
      throw CorruptFileError(what + ": section " + quoted(name) + " lies outside its block");
    SectionRef ref{name, static_cast<int64_t>(offset), static_cast<int64_t>(length),
                   static_cast<uint32_t>(entry.items[3].as_uint64())};
    ranges.emplace_back(ref.offset, ref.length, name);
    sections.emplace(name, std::move(ref));
  }
  check_disjoint(std::move(ranges), what);
  return sections;
}

void check_disjoint(std::vector<std::tuple<int64_t, int64_t, std::string>> ranges, const std::string& what) {
  ranges.erase(std::remove_if(ranges.begin(), ranges.end(), [](const auto& r) { return std::get<1>(r) == 0; }),
               ranges.end());
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& [a, n, name] = ranges[i - 1];
    if (a + n > std::get<0>(ranges[i]))
      throw CorruptFileError(what + ": " + quoted(name) + " overlaps " + quoted(std::get<2>(ranges[i])));
  }
}

Footer read_footer(const ByteSource& source) {
  const std::string& name = source.name();
  const int64_t size = source.size();
  if (size < kPreambleSize) {
    const std::vector<uint8_t> head = source.read(0, size);
    if (head.empty() || std::memcmp(head.data(), kMagic, std::min<size_t>(head.size(), 8)) != 0)
      throw FormatError(name + ": not a .sinr file (too short, bad magic)");
    throw CorruptFileError(name + ": truncated .sinr file (" + std::to_string(size) + " bytes)");
  }
  const std::vector<uint8_t> preamble = source.read(0, kPreambleSize);
  if (std::memcmp(preamble.data(), kMagic, 8) != 0) throw FormatError(name + ": not a .sinr file (bad magic)");
  const int major = static_cast<int>(le(preamble.data() + 8, 2));
  const int minor = static_cast<int>(le(preamble.data() + 10, 2));
  const uint64_t reserved = le(preamble.data() + 12, 4);
  const std::string version = std::to_string(major) + "." + std::to_string(minor);
  if (major == 1)
    throw UnsupportedVersionError(name + ": .sinr format " + version +
                                  " is not read by scinrcodec 2 or later; decode it with scinrcodec 1.x (pip install "
                                  "'scinrcodec<2', then sinr decode FILE out.h5ad) and encode the result again");
  if (!read_version(major)) {
    std::string majors;
    for (const ReadVersion& v : kReadVersions)
      majors += (majors.empty() ? "" : " and ") + std::to_string(v.major) + ".x";
    throw UnsupportedVersionError(name + ": .sinr format " + version + " is not supported (this reader reads " +
                                  majors + ")");
  }
  if (size < kPreambleSize + kTrailerSize)
    throw CorruptFileError(name + ": truncated .sinr file (" + std::to_string(size) + " bytes)");
  const std::vector<uint8_t> trailer = source.read(size - kTrailerSize, kTrailerSize);
  const uint64_t length = le(trailer.data(), 8);
  const uint32_t footer_crc = static_cast<uint32_t>(le(trailer.data() + 8, 4));
  const uint64_t trailer_reserved = le(trailer.data() + 12, 4);
  if (std::memcmp(trailer.data() + 16, kEndMagic, 8) != 0)
    throw CorruptFileError(name + ": no .sinr trailer at its end (the file is truncated or has bytes appended)");
  if (reserved || trailer_reserved)
    throw CorruptFileError(name + ": reserved fields of the preamble or trailer are not zero");
  if (length > kMaxFooterBytes || static_cast<int64_t>(length) > size - kTrailerSize - kPreambleSize)
    throw CorruptFileError(name + ": footer length " + std::to_string(length) + " does not fit the file");
  const int64_t offset = size - kTrailerSize - static_cast<int64_t>(length);
  std::vector<uint8_t> covered = preamble;
  const std::vector<uint8_t> packed = source.read(offset, static_cast<int64_t>(length));
  covered.insert(covered.end(), packed.begin(), packed.end());
  if (!crc32_matches(covered.data(), static_cast<int64_t>(covered.size()), footer_crc))
    throw CorruptFileError(name + ": footer checksum mismatch (file is corrupt)");
  Footer footer;
  footer.major = major;
  footer.minor = minor;
  footer.offset = offset;
  footer.crc = footer_crc;
  footer.content = unpack_header(packed.data(), packed.size(), kMaxFooterBytes, name + ": footer");
  return footer;
}

}  // namespace sinr::storage
