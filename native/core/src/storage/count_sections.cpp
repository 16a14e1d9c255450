// A chunk's count sections: checks and format 3's tables (see count_sections.hpp).
#include "sinr/storage/count_sections.hpp"

#include <vector>

#include "sinr/models.hpp"
#include "sinr/storage/container.hpp"
#include "sinr/storage/errors.hpp"

namespace sinr::storage {

void check_value_counts(Span<const uint64_t> counts, int64_t nnz, const std::string& what) {
  uint64_t sum = 0;
  bool small = true;
  for (int64_t i = 0; i < counts.size; ++i) {
    sum += counts.data[i];  // each below 2**40 when it counts: the sum of a chunk's cannot wrap
    small = small && counts.data[i] < tile3::kCountLimit;
  }
  if (sum != static_cast<uint64_t>(nnz) || !small)
    throw CorruptFileError(what + ": value counts do not add up to the chunk's nonzeros");
}

std::unique_ptr<tile3::ChunkTables> format3_tables(Span<const uint8_t> gap_section, Span<const uint8_t> value_section,
                                                         bool code_values, int64_t nnz, Span<const int64_t> tile_n,
                                                         Span<const int64_t> tile_k, const std::string& what) {
  thread_local std::vector<uint8_t> raw;
  thread_local std::vector<uint64_t> values, gaps;
  values.clear();
  if (code_values) {
    unpack_shuffled_into<uint64_t>(value_section.data, static_cast<size_t>(value_section.size),
                                   static_cast<uint64_t>(tile3::kContexts) * kNumBins, what + ": section 'values.counts'",
                                   raw, values);
    check_value_counts(Span<const uint64_t>{values.data(), static_cast<int64_t>(values.size())}, nnz, what);
  }
  unpack_shuffled_into<uint64_t>(gap_section.data, static_cast<size_t>(gap_section.size),
                                 static_cast<uint64_t>(tile3::kGapClasses) * kNumBins, what + ": section 'gaps.counts'",
                                 raw, gaps);
  for (uint64_t x : gaps)
    if (x >= tile3::kCountLimit) throw CorruptFileError(what + ": gap counts are not all below 2**40");  // G1
  int64_t coded[tile3::kGapClasses];
  tile3::coded_per_class(tile_n, tile_k, coded);
  for (int cls = 0; cls < tile3::kGapClasses; ++cls) {
    uint64_t sum = 0;  // below 231 * 2**40
    for (int b = 0; b < kNumBins; ++b) sum += gaps[static_cast<size_t>(cls) * kNumBins + b];
    if (sum != static_cast<uint64_t>(coded[cls]))  // G2
      throw CorruptFileError(what + ": gap counts do not add up to the coded positions of its tiles");
  }
  return std::make_unique<tile3::ChunkTables>(
      Span<const uint64_t>{gaps.data(), static_cast<int64_t>(gaps.size())},
      Span<const uint64_t>{values.data(), static_cast<int64_t>(values.size())});
}

}  // namespace sinr::storage
