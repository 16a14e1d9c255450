// sinr_digest THREADS FILE...: what the core reads from each .sinr file, one line a file and matrix:
// its shape, nonzeros and an FNV-1a digest of every read the bindings make (the names, the whole
// matrix, two genes, two cells, an entry, the moments, the file's contents map and its parts'
// images; each on THREADS threads), or the error's kind and message where the file is refused; each
// read by every tile decoder the core has, which must agree (else the exit status is 1).
// Nothing in it depends on the machine or the threads, so the lines are the same wherever the core
// is right: CI builds it for the host and, cross-compiled, for aarch64 (run under qemu on one
// thread: qemu-user 7.2 hangs as a program starts a thread there), and compares their lines over
// every conformance vector, the R fixtures and real cuts (.ci/aarch64). That is how the scalar decoder
// (what a CPU without AVX2 runs) and the portable lanes, the integer SIREN, the checksums' and CRCs'
// scalar paths and every check are shown to give the same numbers and refusals as the x86-64 build.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "sinr/lanes3.hpp"
#include "sinr/tile.hpp"
#include "sinr/storage/errors.hpp"
#include "sinr/storage/reader.hpp"
#include "sinr/storage/source.hpp"

namespace {

using sinr::storage::MatrixReader;
using sinr::storage::SparseColumns;

// FNV-1a over 64-bit words: a digest of integers, whatever their width or the machine's byte order.
class Digest {
 public:
  void add(uint64_t word) {
    for (int i = 0; i < 8; ++i) {
      hash_ = (hash_ ^ ((word >> (8 * i)) & 0xff)) * 0x100000001b3ULL;
    }
  }
  void add(const std::string& text) {
    add(static_cast<uint64_t>(text.size()));
    for (unsigned char c : text) add(static_cast<uint64_t>(c));
  }
  void add(const sinr::storage::NameList& names) {
    add(static_cast<uint64_t>(names.present));
    add(static_cast<uint64_t>(names.values.size()));
    for (const std::string& name : names.values) add(name);
  }
  template <typename T>
  void add(const std::vector<T>& values) {
    add(static_cast<uint64_t>(values.size()));
    for (const T& v : values) add(static_cast<uint64_t>(v));
  }
  void add(const SparseColumns& m) {
    add(static_cast<uint64_t>(m.n_rows));
    add(static_cast<uint64_t>(m.n_cols));
    add(m.indptr);
    add(m.indices);
    add(m.values);
  }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ULL;
};

// The reads of one matrix, digested in a fixed order.
std::string digest_matrix(const std::string& path, const std::string& matrix, int threads) {
  MatrixReader reader(std::make_shared<sinr::storage::FileSource>(path), matrix);
  Digest d;
  for (const auto& names : {reader.gene_ids(), reader.gene_names(), reader.feature_types(), reader.cell_names()}) {
    d.add(names);
  }
  const sinr::storage::FileContents contents = reader.contents();
  d.add(contents.object);
  for (const std::string& element : contents.elements) d.add(reader.element_image(element));
  d.add(reader.whole(threads));
  const int64_t genes = reader.n_genes(), cells = reader.n_cells();
  if (genes > 0) d.add(reader.genes({genes - 1, genes / 2, 0}, threads));
  if (cells > 0) {
    d.add(reader.cells({cells / 2, 0, cells - 1}, threads));
    if (genes > 0) d.add(static_cast<uint64_t>(reader.entry(genes / 2, cells / 2)));
  }
  const auto moments = reader.moments(threads);
  d.add(moments.genes);
  for (const auto* arrays : {&moments.of_genes, &moments.of_cells}) {
    d.add(arrays->nonzeros);
    d.add(arrays->sums);
    d.add(arrays->squares_low);
    d.add(arrays->squares_high);
  }
  char line[160];
  std::snprintf(line, sizeof line, "%lld x %lld, %lld nonzeros, digest %016llx", static_cast<long long>(genes),
                static_cast<long long>(cells), static_cast<long long>(reader.nnz()),
                static_cast<unsigned long long>(d.value()));
  return line;
}

// One matrix's line: its digest, or its refusal.
std::string matrix_line(const std::string& path, const std::string& matrix, int threads) {
  try {
    return digest_matrix(path, matrix, threads);
  } catch (const sinr::storage::SinrError& e) {
    return std::string(e.kind()) + ": " + e.what();
  }
}

// Every matrix of the file, a line each (a refusal is a line too), read by each tile decoder the core
// has (the scalar one, the lanes on plain arrays, and what the CPU runs by default: AVX2 lanes where
// it has them); false, with the lines on stderr, where the decoders disagree.
bool describe(const std::string& path, int threads) {
  std::vector<std::string> names;
  try {
    names = MatrixReader(std::make_shared<sinr::storage::FileSource>(path)).matrix_names();
  } catch (const sinr::storage::SinrError& e) {
    std::printf("%s: %s: %s\n", path.c_str(), e.kind(), e.what());
    return true;
  }
  bool agree = true;
  for (const std::string& name : names) {
    std::string lines[3];
    const sinr::TileLanes decoders[3] = {sinr::TileLanes::kAuto, sinr::TileLanes::kScalar, sinr::TileLanes::kPortable};
    for (int k = 0; k < 3; ++k) {
      sinr::set_tile_lanes(decoders[k]);
      lines[k] = matrix_line(path, name, threads);
    }
    sinr::set_tile_lanes(sinr::TileLanes::kAuto);
    std::printf("%s [%s]: %s\n", path.c_str(), name.c_str(), lines[0].c_str());
    if (lines[1] != lines[0] || lines[2] != lines[0]) {
      std::fprintf(stderr, "%s [%s]: the tile decoders disagree:\n  %s (%s)\n  %s (scalar)\n  %s (portable lanes)\n",
                   path.c_str(), name.c_str(), lines[0].c_str(), sinr::tile_lanes_path(), lines[1].c_str(),
                   lines[2].c_str());
      agree = false;
    }
  }
  return agree;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  if (argc < 3 || threads < 1) {
    std::fprintf(stderr, "usage: sinr_digest THREADS FILE.sinr ...\n");
    return 2;
  }
  // the lanes take every batch of format-3 tiles, however few its nonzeros a table row (the files
  // here are small: by default such batches go to the scalar decoder)
  sinr::set_packed_nnz_per_row(0);
  bool agree = true;
  try {
    for (int i = 2; i < argc; ++i) agree = describe(argv[i], threads) && agree;
  } catch (const std::exception& e) {  // not a refusal of the core's own: a defect, which CI must see
    std::fprintf(stderr, "sinr_digest: %s\n", e.what());
    return 1;
  }
  const sinr::lanes3::LaneCounts lanes = sinr::lanes3::lane_counts();  // that they ran, for the log
  std::fprintf(stderr, "sinr_digest: the lanes decoded %lld tiles and handed %lld to the scalar decoder\n",
               static_cast<long long>(lanes.finished), static_cast<long long>(lanes.handed_back));
  return agree ? 0 : 1;
}
