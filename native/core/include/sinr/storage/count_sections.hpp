// A chunk's count sections (spec §5.4.3, §6.4, §C.4), checked by the rules a reader applies before
// it decodes any of the chunk's tiles, with the one-line messages both readers give: the value
// counts add up to the chunk's nonzeros, each below 2**40 (K13, G3); format 3's gap counts are each
// below 2**40 (G1) and add up, per density class, to the coded positions of its tiles (G2). The
// Python reader (scinrcodec/reader/index.py) and the container reader (reader.cpp) both build a
// format-3 chunk's tables here.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "sinr/span.hpp"
#include "sinr/tile3.hpp"

namespace sinr::storage {

// K13 and G3 on a chunk's value counts (either format); what names the chunk.
void check_value_counts(Span<const uint64_t> counts, int64_t nnz, const std::string& what);

// A format-3 chunk's decoding tables from the stored bytes of its count sections (zstd shuffled
// arrays of uint64, their CRCs already checked; values empty when the chunk codes no values), its
// nonzeros and its tiles' entries and nonzeros: K13/G3 on the values, then G1 and G2 on the gaps.
// The sections decompress into buffers each thread keeps (236 KB for both), not fresh pages at
// every chunk a reader loads.
std::unique_ptr<tile3::ChunkTables> format3_tables(Span<const uint8_t> gap_section, Span<const uint8_t> value_section,
                                                         bool code_values, int64_t nnz, Span<const int64_t> tile_n,
                                                         Span<const int64_t> tile_k, const std::string& what);

}  // namespace sinr::storage
