// CRC-32 (zlib's: reflected polynomial 0xEDB88320, initial and final xor 0xFFFFFFFF; spec §3.1), the
// checksum of every section, header, footer and band of tiles. A reader verifies each byte it
// decodes, so this runs at memory speed: carry-less multiplication folding where the CPU has
// PCLMULQDQ (on 512-bit registers where it has VPCLMULQDQ; x86-64, chosen at run time, no -march
// flag), slicing by 8 bytes elsewhere; all give zlib's value for every input (tests hold each to
// zlib on every length and alignment).
#pragma once
#include <cstdint>
#include <string>

namespace sinr {

// CRC-32 of n bytes, continuing from `crc` (0 for a fresh checksum): crc32(b, crc32(a)) is the CRC
// of a followed by b, as zlib.crc32's second argument.
uint32_t crc32(const uint8_t* data, int64_t n, uint32_t crc = 0);

// Whether n bytes match the CRC-32 a file stores for them: every check of a stored checksum goes
// through here. A fuzzing build (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, libFuzzer's convention)
// takes any stored value as matching, so that a mutated file reaches the parsing and decoding behind
// its checksums; nothing else is built so.
inline bool crc32_matches(const uint8_t* data, int64_t n, uint32_t stored) {
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
  static_cast<void>(crc32(data, n) == stored);  // the bytes are still read whole
  return true;
#else
  return crc32(data, n) == stored;
#endif
}

// Which implementation crc32 runs: "vpclmulqdq" (512-bit folding, where the CPU has AVX-512 and
// VPCLMULQDQ), "pclmul" or "portable". set_crc32_path names the widest one allowed (tests compare every
// path the machine has on the same inputs) and returns the previous setting; std::invalid_argument
// for another name.
const char* crc32_path();
const char* set_crc32_path(const std::string& widest);

}  // namespace sinr
