// libFuzzer harness of the container reader (storage/reader.hpp), the C++ reader the R package and
// Python's single-cell and entry reads use on their own: every check of a hostile file must end in
// one of its typed errors (storage/errors.hpp), never a crash, a sanitizer report, an exception of
// another kind or an allocation beyond libFuzzer's limit. Built with ASan and UBSan by .ci/sanitize
// (clang), in fuzzing mode, where stored CRC-32s match any bytes (crc32.hpp's crc32_matches), so
// that mutations reach the parsing, tables and tile decoding behind them:
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
//           -Inative/core/include native/fuzz/fuzz_container.cpp native/core/src/*.cpp \
//           native/core/src/storage/*.cpp -lzstd -o fuzz_container && ./fuzz_container -runs=N DIR
//
// The first byte picks the threads (bit 0: two), the cells kept between reads (bit 1: none) and the
// run length of a chunk decoded whole (bit 2: one tile a run); the rest is the file. The seeds are
// the conformance vectors (tests/conformance/*/matrix.sinr), valid and invalid, behind a zero byte.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sinr/storage/errors.hpp"
#include "sinr/storage/reader.hpp"
#include "sinr/storage/source.hpp"

namespace {

using namespace sinr::storage;

// Every read the bindings offer, on the first and last gene and cell: names, the contents map and
// its parts, entries, genes, cells (twice: the second from what the first kept), a block, the
// whole matrix, the summaries of both axes; each read is independent, so a refusal of one does not
// skip the others.
void read_everything(MatrixReader& r, int threads) {
  const auto attempt = [](auto&& read) {
    try {
      read();
    } catch (const SinrError&) {
    }
  };
  attempt([&] { r.gene_ids(), r.gene_names(), r.feature_types(), r.cell_names(); });
  attempt([&] {
    for (const std::string& element : r.contents().elements) attempt([&] { r.element_image(element); });
  });
  const int64_t genes = r.n_genes(), cells = r.n_cells();
  if (genes == 0 || cells == 0) return;
  const std::vector<int64_t> both_genes{0, genes - 1}, both_cells{cells - 1, 0};
  attempt([&] { r.entry(0, 0), r.entry(genes - 1, cells - 1); });
  attempt([&] { r.genes(both_genes, threads); });
  attempt([&] { r.cells(both_cells, threads); });
  attempt([&] { r.cells({cells - 1}, threads); });
  // A cell's compressed rows hold a pointer per declared gene, as any CSR of the matrix's rows does
  // (a file may declare 2**31 - 1): only the transposition of a real size is tried.
  if (genes <= (1 << 24)) attempt([&] { transposed(r.cells(both_cells, threads)); });
  attempt([&] { r.block(&both_genes, &both_cells, threads); });
  attempt([&] { r.whole(threads); });
  attempt([&] { r.moments(threads); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  auto source = std::make_shared<MemorySource>(std::vector<uint8_t>(data + 1, data + size), "fuzz.sinr");
  try {
    MatrixReader reader(source);
    const int threads = mode & 1 ? 2 : 1;
    reader.set_threads(threads);
    if (mode & 2) reader.set_keep_bytes(0);
    if (mode & 4) reader.set_run_entries(1);
    read_everything(reader, threads);
    for (const std::string& name : reader.matrix_names()) {
      if (name == reader.name()) continue;
      MatrixReader other(source, name);
      read_everything(other, threads);
    }
  } catch (const SinrError&) {
  }
  return 0;
}
