// CRC-32 (zlib's: reflected polynomial 0xEDB88320, initial and final xor 0xFFFFFFFF; spec §3.1), the
// checksum of every section, header, footer and band of tiles. A reader verifies each byte it
// decodes, so this runs at memory speed: carry-less multiplication folding where the CPU has
// PCLMULQDQ (x86-64, chosen at run time, no -march flag), slicing by 8 bytes elsewhere; both give
// zlib's value for every input (tests hold them to zlib on every length and alignment).
#pragma once
#include <cstdint>

namespace sinr {

// CRC-32 of n bytes, continuing from `crc` (0 for a fresh checksum): crc32(b, crc32(a)) is the CRC
// of a followed by b, as zlib.crc32's second argument.
uint32_t crc32(const uint8_t* data, int64_t n, uint32_t crc = 0);

// Which implementation crc32 runs: "pclmul" or "portable"; the portable one can be forced (tests
// compare both on the same inputs). Returns the previous setting.
const char* crc32_path();
bool set_crc32_portable(bool portable);

}  // namespace sinr
