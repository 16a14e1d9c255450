// Encoder kernels of one chunk (spec §5): cell totals, the arrangement of a chunk's nonzeros by
// (tile, position), and each nonzero's value bin and baseline context. Inputs come from the
// encoder's validated blocks; every index is still checked, and a violation returns a status other
// than kArrangeOk with nothing written out of bounds.
#pragma once
#include <cstdint>

#include "sinr/span.hpp"

namespace sinr {

enum ArrangeStatus : int {
  kArrangeOk = 0,
  kArrangeBadPointers = 1,  // index pointers decrease or run past the nonzeros
  kArrangeBadIndex = 2,     // a gene, row, cell or column index lies outside its table
  kArrangeBadGeometry = 3,  // bands, widths or tiles are inconsistent
  kArrangeBadSize = 4,      // arrays of mismatched lengths
  kArrangeBadValue = 5,     // a negative value
  kArrangeBadCounts = 6,    // row counts that disagree with the nonzeros' rows
};

const char* arrange_status_text(int status);

// The 32-bit items a nonzero takes in arrange's staging: its row, new column and value.
constexpr int64_t kStagedItems = 3;

// The chunk kernels read a validated block as it is held (io.sources.CellBlock): genes and values
// in 32 bits (every count is at most 2**31 - 1, MAX_COUNT), so that a block of int32 arrays, what
// 10x and AnnData files hold, is read in place rather than copied to 64 bits first.

// out[c] = sum of values[indptr[c] .. indptr[c + 1]) (mod 2**64); out holds indptr.size - 1 cells.
int cell_totals(Span<const int64_t> indptr, Span<const int32_t> values, Span<int64_t> out);

// A chunk's nonzeros per row: counts[r] (counts as long as gene_rank, zeroed first) = the genes whose
// gene_rank is r; *n_rows = the highest such row + 1 (0 without nonzeros). What plans the chunk's
// tiles, in one pass without a temporary of a nonzero each.
int row_counts(Span<const int32_t> genes, Span<const int64_t> gene_rank, Span<int64_t> counts, int64_t* n_rows);

// The chunk's nonzeros (CSC over its cells: indptr [n_cells + 1], original genes, values >= 0)
// sorted by (tile, row-major position in the tile): cells in the order cell_order (new column c
// holds cell cell_order[c]), rows gene_rank[gene], row r holding row_nnz[r] of them
// (row_counts; n_rows = row_starts[n_bands] entries); band b holds rows row_starts[b] ..
// row_starts[b + 1] - 1 and is cut into tiles tile_starts[b] .. tile_starts[b + 1] - 1 of widths[b]
// columns. Writes, for each nonzero in that order, its row, column, value and position in its tile,
// and each tile's nonzeros to tile_k [n_tiles]. Within a tile, nonzeros of one (row, column)
// (impossible in valid input) keep the order of the walk. `staging` [kStagedItems * nnz] holds the nonzeros
// between the two sorts: the caller's, so that an encoder can keep it from one chunk to the next
// (fresh memory faults every page in again: 12% of arrange's time).
int arrange(Span<const int64_t> indptr, Span<const int32_t> genes, Span<const int32_t> values,
            Span<const int64_t> cell_order, Span<const int64_t> gene_rank, Span<const int64_t> row_nnz,
            Span<const int64_t> row_starts, Span<const int64_t> widths, Span<const int64_t> tile_starts,
            int64_t n_cells, Span<int32_t> rows, Span<int32_t> cols, Span<int32_t> out_values,
            Span<int32_t> positions, Span<uint32_t> staging, Span<int64_t> tile_k);

// out[i] = baseline_context(gene_terms[rows[i]] + cell_terms[cols[i]]) (format 2, spec §C.5), or with
// fine tile3::baseline_context(gene_terms[rows[i]], cell_terms[cols[i]]) (format 3, §6.5).
int baseline_contexts(Span<const int32_t> rows, Span<const int32_t> cols, Span<const int64_t> gene_terms,
                      Span<const int64_t> cell_terms, bool fine, Span<int32_t> out);

// out[i] = bin_of(u[i]).bin (u[i] itself where negative, as the reference does); kArrangeBadSize,
// nothing written, where out and u differ in length.
int value_bins(Span<const int32_t> u, Span<int32_t> out);

// The chunk's value counts (spec §6.4 `values.counts`): counts[contexts[i] * n_bins + bins[i]] += 1
// over a zeroed counts of n_contexts * n_bins; kArrangeBadIndex where a context or bin lies outside.
// In one pass, without numpy's two temporaries of a nonzero each (fresh pages, zeroed by the kernel).
int value_counts(Span<const int32_t> contexts, Span<const int32_t> bins, int64_t n_contexts, int64_t n_bins,
                 Span<int64_t> counts);

}  // namespace sinr
