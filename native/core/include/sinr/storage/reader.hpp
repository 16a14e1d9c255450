// The reader of one matrix of a .sinr file (spec §5, §8, §9): its footer entry checked at open, its
// chunks loaded and checked on first use, and the reads a binding needs — one entry, genes or cells
// by index, the whole matrix — as CSC arrays (genes x cells). Tiles are decoded by the tile codec's
// batch API (tile.hpp) and whole chunks placed by the assemble kernels (assemble.hpp); formats 2 and
// 3 differ here only in their stage ids, their chunks' count sections and the models built from them
// (format 3: required features and a tile3::ChunkTables per chunk, spec §5.1.1, §6.4). A matrix with
// the feature `segments` (format 3.1, spec §5.5) has gene tables per run of chunks: each chunk reads
// its segment's rows of genes.order and genes.baseline, as a matrix of one segment reads them all,
// so the kernels see a one-segment matrix per chunk and unsegmented files run as before. Every rule of
// spec §9 the Python reader (scinrcodec/reader) applies
// is applied here, at the same moment, with the same one-line message; failures are the typed
// errors of errors.hpp, never undefined behaviour.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sinr/moments.hpp"
#include "sinr/span.hpp"
#include "sinr/storage/container.hpp"

namespace sinr::storage {

// A sparse matrix in compressed columns: column j holds rows indices[indptr[j] .. indptr[j+1]),
// ascending, with their values.
struct SparseColumns {
  int64_t n_rows = 0, n_cols = 0;
  std::vector<int64_t> indptr;
  std::vector<int32_t> indices;
  std::vector<int32_t> values;
};

// m's transpose in the same form: column r holds the columns of m with a nonzero in row r,
// ascending, with their values (m's compressed rows: what a row-major result is built from, in
// time m.n_rows + nnz). FormatError for a row index outside m, InvalidInputError for more than
// 2**31 - 1 columns.
SparseColumns transposed(const SparseColumns& m);

// What a file of format 2.1 or 3.x stores besides its matrices (spec §14): the object ("anndata" or
// "10x-h5"; empty when the file holds matrices only), the parts stored as HDF5 images, and the
// whole contents map (its other fields: names_in, group, matrices, ...).
struct FileContents {
  std::string object;
  std::vector<std::string> elements;
  msgpack::Value map;
};

// What MatrixReader::moments gives: the moments of each gene the file stores (`genes`, their
// original indices ascending; a gene not listed holds no nonzero), so that nothing is allocated per
// gene a file declares, and of each cell.
struct MatrixMoments {
  std::vector<int64_t> genes;
  MomentArrays of_genes, of_cells;
};

// A list of names, or none (the file does not store it).
struct NameList {
  bool present = false;
  std::vector<std::string> values;
};

class MatrixReader {
 public:
  // Open `matrix` of the file (empty: the first). Reads the preamble, trailer and footer only.
  MatrixReader(std::shared_ptr<const ByteSource> source, const std::string& matrix = std::string());
  ~MatrixReader();
  MatrixReader(const MatrixReader&) = delete;
  MatrixReader& operator=(const MatrixReader&) = delete;

  const std::string& path() const { return what_; }
  const std::string& name() const { return name_; }
  int64_t n_genes() const { return n_genes_; }
  int64_t n_cells() const { return n_cells_; }
  int64_t nnz() const { return nnz_; }
  const std::string& mode() const { return mode_; }
  int64_t max_error() const { return max_error_; }
  int64_t n_chunks() const { return n_chunks_; }
  // Segments (spec §5.5): 1 for a matrix without the feature.
  int64_t n_segments() const { return static_cast<int64_t>(segment_chunks_.size()) - 1; }
  int major() const { return major_; }
  int minor() const { return minor_; }
  int64_t file_size() const { return source_->size(); }
  // The footer's CRC-32: with file_size, what tells two versions of a file apart (the footer lists
  // every section's CRC), as the Python reader's file_identity does.
  uint32_t footer_crc() const { return footer_crc_; }
  // FileChangedError when the file is no longer the version opened (a local file rewritten in place),
  // as every read checks after it reads: for what a binding keeps of a file (its summaries), which
  // no read checks again.
  void check_unchanged() const;
  const std::vector<std::string>& matrix_names() const { return matrix_names_; }
  // First cell of each chunk, and the number of cells last.
  const std::vector<int64_t>& chunk_starts() const { return chunk_starts_; }
  // Bytes of this matrix in the file: its chunk blocks and its sections.
  int64_t stored_bytes() const;
  // The footer's informative stats of this matrix (ints and finite floats only).
  const std::map<std::string, double>& stats() const { return stats_; }
  // The footer's informative options.inputs_error (spec §12.7) of a lossless file: how far values decoded
  // from lossy files may be from the counts first encoded (E, or -1: no bound); kNoInputsError where absent,
  // not an int of -1 .. 2^31 - 2, or the file is not lossless.
  static constexpr int64_t kNoInputsError = -2;
  int64_t inputs_error() const { return inputs_error_; }
  // The footer's informative `writer` ("?" when absent).
  const std::string& writer() const { return writer_; }
  // The file-level sections' contents map, checked (spec §14.1-§14.2; empty for format 2.0).
  FileContents contents();
  // The HDF5 image of one element of the contents map ("obs", "var", ..., or "h5" of a 10x file),
  // read from its section and checked to hold exactly the entry's `bytes` (spec §14.1 S3-S4).
  std::vector<uint8_t> element_image(const std::string& element);

  // Names, read and unpacked again at each call: the bindings keep what they are given (R's
  // SinrFile caches them), and the copy this reader used to keep too cost as much again (dimnames()
  // of pbmc4k 6e7, 55,893 cells, raised an R process by 17.4 MB with it, 12.6 MB without).
  NameList gene_ids();
  NameList gene_names();  // the ids when the file says gene names are ids
  NameList feature_types();
  NameList cell_names();

  // One entry (0 <= gene < n_genes, 0 <= cell < n_cells): one tile, decoded only up to the entry.
  int64_t entry(int64_t gene, int64_t cell);
  // The rows of `genes` (original indices, any order, repeats allowed) over every cell, a chunk per
  // thread on up to `threads` threads (here and below, 0: as many as set_threads gave).
  SparseColumns genes(const std::vector<int64_t>& genes, int threads = 0);
  // Every gene over the columns of `cells` (original indices, any order, repeats allowed). A chunk
  // of which the read needs at least half the tiles is decoded whole, as whole() decodes it (its
  // checksum verified), and the last chunk decoded so for part of its cells is kept: the reads of
  // consecutive ranges of cells that block processing makes (each range a part of a chunk, whose
  // cells the chunk stores in its own order, so that every part needs most of its tiles) decode
  // each chunk once. The kept chunk costs its nonzeros' memory until another chunk replaces it.
  SparseColumns cells(const std::vector<int64_t>& cells, int threads = 0);
  // The block of `genes` x `cells` (either may be null: every gene, every cell), through whichever
  // of genes() and cells() decodes less.
  SparseColumns block(const std::vector<int64_t>* genes, const std::vector<int64_t>* cells, int threads = 0);
  // The whole matrix, chunks decoded on up to `threads` threads, every chunk's content checksum
  // verified.
  SparseColumns whole(int threads = 1);
  // Each stored gene's and each cell's nonzero count, sum and sum of squares (moments.hpp), in one
  // pass over every chunk on up to `threads` threads, never placed; every chunk's content checksum
  // verified.
  MatrixMoments moments(int threads = 1);
  // Threads the reads of genes and cells run on where they are not given (a read of a few cells
  // decodes their tiles on them when they hold kParallelMinEntries nonzeros or more; default 1).
  void set_threads(int threads) { threads_.store(std::max(threads, 1)); }
  // cells() decodes a chunk it needs whole in runs of about this many nonzeros (at least one tile).
  void set_run_entries(int64_t entries) { run_entries_ = entries; }
  // cells() keeps, of a chunk it decodes whole, the cells after the wanted ones that fit in this
  // many bytes (8 a nonzero), for the next reads of consecutive cells (block processing); the
  // default keeps the rest of the chunk.
  void set_keep_bytes(int64_t bytes) { keep_bytes_ = bytes; }
  // The same, written straight into the caller's arrays: indptr (n_cells + 1 items), indices and
  // values (nnz items each); V is int32_t or double (what R's dgCMatrix holds).
  template <typename V>
  void whole_into(int threads, int64_t* indptr, int32_t* indices, V* values);

 private:
  struct Chunk;
  struct Genes;
  struct Decoded;
  struct ChunkColumns;
  class BandHandoff;

  // Chunk i, loaded at its first use; `handoff`, when given, receives the chunk's band layout as
  // soon as its load has it (a load by this call only).
  Chunk& chunk(int64_t i, BandHandoff* handoff = nullptr);
  // Chunk ci's cells (chunk-local, original order) that `local` (distinct local cells, ascending)
  // names, and when the chunk is decoded whole the cells after them that keep_bytes_ allows, which
  // are kept for the next call; the tiles of a few cells are decoded on up to `threads` threads.
  std::shared_ptr<const ChunkColumns> chunk_columns(int64_t ci, const std::vector<int64_t>& local, int threads);
  // A few cells' decoded nonzeros (the tiles of the cells a read wants) placed by cell into `out`:
  // its indptr over the chunk's n_cells, each cell's genes ascending. No checksum: they are not
  // the whole chunk.
  void place_chunk(const Chunk& c, const Decoded& d, ChunkColumns& out);
  // Each cell of `out`, its indices being the ranks of its genes in the chunk's segment, put in
  // gene order and given its genes.
  void order_by_gene(const Chunk& c, ChunkColumns& out);
  // Chunk c decoded whole, its wanted cells `local` (distinct, ascending) and the cells after them
  // that keep_bytes_ allows placed into `out` by cell; the tiles are decoded in runs of about
  // run_entries_ nonzeros, twice where `starts` (each cell's first nonzero) is not yet known: each
  // cell's count, then each nonzero to its place. The read holds the kept cells and one run's
  // triples, not the chunk's triples and a scratch besides (block processing in R held 60 MB for
  // a chunk of 2.1M nonzeros). Returns the chunk's content checksum.
  uint64_t place_chunk_in_runs(Chunk& c, const std::vector<int64_t>& local, std::vector<int64_t> starts,
                               ChunkColumns& out);
  // Chunk c's cell names from its cells.barcodes (spec §5.7), appended to `out`.
  void barcode_names(const Chunk& c, std::vector<std::string>& out);
  // Chunk c's tile data, read at once, every band's checksum verified; _into reads it into the
  // front of `buffer` (grown when too small) and returns those bytes.
  std::vector<uint8_t> chunk_data(Chunk& c);
  Span<const uint8_t> chunk_data_into(Chunk& c, std::vector<uint8_t>& buffer);
  // Chunk c's tile data at `data`, every band's checksum verified (once per band): those bytes.
  Span<const uint8_t> verified_data(Chunk& c, const uint8_t* data);
  // Whether chunk i is loaded (its header and tables).
  bool loaded(int64_t i);
  // Every nonzero of chunk c, decoded on `threads` threads into `reuse`'s memory, its tile data read
  // into `bytes` (a thread's whole-matrix read keeps both from one chunk to the next).
  Decoded decode_chunk(Chunk& c, Decoded reuse, std::vector<uint8_t>& bytes, int threads);
  // A placement's status, then a whole chunk's content checksum, as errors of a corrupt file.
  void check_placed(const Chunk& c, int status) const;
  void check_chunk_sum(const Chunk& c, uint64_t checksum) const;
  // Where d holds every nonzero of chunk c (every tile decoded whole, no filter): W1 on them (spec §6.6:
  // a read that decodes a whole chunk checks its checksum, however it came to decode it).
  void check_whole_decode(const Chunk& c, const Decoded& d);
  std::unique_ptr<Chunk> load_chunk(int64_t i, BandHandoff* handoff = nullptr);
  // segments.index (rules SG1, SG2) into segment_chunks_ and segment_rows_; one segment without it.
  void parse_segments(int64_t n_segments);
  const Genes& genes_table();
  NameList global_names(const std::string& section);
  SectionTable file_sections();
  std::vector<uint8_t> section_bytes(const SectionTable& table, const std::string& name, const std::string& what);
  void verify_band(Chunk& c, int64_t band, const uint8_t* bytes);
  // The kept nonzeros of `tiles` of chunk c; `data`, when given, holds the chunk's whole tile data;
  // decoded into `reuse`'s memory (a thread's last chunk's: no fresh pages for each chunk).
  Decoded decode(Chunk& c, const std::vector<int64_t>& tiles, int64_t want_row, int64_t want_col,
                 const std::vector<uint8_t>& col_mask, Span<const uint8_t> data, int threads, Decoded reuse);
  // The segment of chunk ci, and gene's row in segment s (counted from the segment's first row), -1
  // when the segment does not store it.
  int64_t segment_of_chunk(int64_t ci) const;
  int64_t stored_row(int64_t segment, int64_t gene);
  void check_index(int64_t i, int64_t n, const char* axis) const;

  std::shared_ptr<const ByteSource> source_;
  std::string what_, name_, mode_, writer_ = "?";
  msgpack::Value file_sections_;
  int major_ = 0, minor_ = 0;
  bool newer_minor_ = false;
  int64_t body_end_ = 0;
  uint32_t footer_crc_ = 0;
  int64_t n_genes_ = 0, n_cells_ = 0, nnz_ = 0, max_error_ = 0, n_stored_ = 0, n_chunks_ = 0;
  int64_t inputs_error_ = kNoInputsError;
  bool gene_names_are_ids_ = false, has_cell_names_ = false;
  std::vector<std::string> matrix_names_;
  std::map<std::string, double> stats_;
  SectionTable sections_;
  std::vector<uint64_t> chunk_index_;  // n_chunks x 6
  std::vector<int64_t> chunk_starts_, nnz_starts_;
  // Segment s holds chunks segment_chunks_[s] .. segment_chunks_[s+1]-1 and rows segment_rows_[s] ..
  // segment_rows_[s+1]-1 (K_s and R_s of spec §5.5); a matrix without the feature is one segment.
  std::vector<int64_t> segment_chunks_, segment_rows_;
  bool segmented_ = false;  // the matrix lists the feature `segments`
  bool cell_order_planes_ = false;  // the matrix lists the feature `cell-order-planes`
  bool cell_barcodes_ = false;  // the matrix lists the feature `cell-barcodes`
  std::mutex lock_;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  std::unique_ptr<Genes> genes_;
  std::mutex kept_lock_;
  std::shared_ptr<const ChunkColumns> kept_;  // the chunk cells() decoded whole last, for part of its cells
  std::atomic<int> threads_{1};  // set by a binding before each read, which other threads may be making
  const uint64_t id_;  // this reader among every reader the process opened (what a thread's buffer holds)
  int64_t run_entries_ = int64_t{1} << 16;
  int64_t keep_bytes_ = INT64_MAX / 16;
};

// The message of a tile decoding status (tile.hpp's TileStatus), as the Python reader words it.
const char* tile_status_text(int64_t status);

}  // namespace sinr::storage
