// Bindings of the C++ container reader (core/include/sinr/storage): ContainerReader, which reads a
// .sinr matrix without any of the Python reader, so that the tests can hold the two readers to the
// same numbers, names and errors. Errors become the scinrcodec.errors class of the same name.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <stdexcept>
#include <optional>
#include <tuple>
#include <vector>

#include "bindings.hpp"
#include "owned.hpp"
#include "sinr/crc32.hpp"
#include "sinr/storage/container.hpp"
#include "sinr/storage/count_sections.hpp"
#include "sinr/storage/errors.hpp"
#include "sinr/storage/reader.hpp"

namespace sinr::python {

namespace {

using storage::MatrixReader;
using storage::NameList;
using storage::SparseColumns;

using Columns = std::tuple<std::tuple<int64_t, int64_t>, NumpyArray<int64_t>, NumpyArray<int32_t>, NumpyArray<int32_t>>;

// A read with the GIL released (other Python threads run meanwhile), its result converted after.
template <typename Read>
auto unlocked(Read&& read) {
  nb::gil_scoped_release released;
  return read();
}

Columns columns(SparseColumns&& m) {
  return {{m.n_rows, m.n_cols}, to_numpy(std::move(m.indptr)), to_numpy(std::move(m.indices)),
          to_numpy(std::move(m.values))};
}

std::optional<std::vector<std::string>> names(NameList&& list) {
  if (!list.present) return std::nullopt;
  return std::move(list.values);
}

// The bytes of any C-contiguous buffer (bytes, bytearray, memoryview, numpy array), held while used.
class BufferView {
 public:
  explicit BufferView(nb::handle object) {
    if (PyObject_GetBuffer(object.ptr(), &view_, PyBUF_C_CONTIGUOUS) != 0) throw nb::python_error();
  }
  ~BufferView() { PyBuffer_Release(&view_); }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
  int64_t size() const { return static_cast<int64_t>(view_.len); }

 private:
  Py_buffer view_{};
};

}  // namespace

void bind_container(nb::module_& m) {
  m.def(
      "crc32",
      [](nb::handle data, uint32_t crc) {
        const BufferView view(data);
        nb::gil_scoped_release released;
        return crc32(view.data(), view.size(), crc);
      },
      nb::arg("data"), nb::arg("crc") = 0, "zlib's CRC-32 of a buffer (continuing from crc).");
  m.def(
      "crc32_ranges",
      [](Array<const uint8_t> buf, Array<const int64_t> offsets, Array<const int64_t> lengths) {
        const int64_t n = static_cast<int64_t>(offsets.shape(0)), size = static_cast<int64_t>(buf.shape(0));
        if (static_cast<int64_t>(lengths.shape(0)) != n)
          throw std::invalid_argument("crc32_ranges: offsets and lengths differ in length");
        std::vector<int64_t> out(static_cast<size_t>(n));
        {
          nb::gil_scoped_release released;
          for (int64_t i = 0; i < n; ++i) {
            const int64_t at = offsets.data()[i], length = lengths.data()[i];
            if (at < 0 || length < 0 || at > size || length > size - at)
              throw std::invalid_argument("crc32_ranges: a range lies outside the buffer");
            out[static_cast<size_t>(i)] = crc32(buf.data() + at, length);
          }
        }
        return to_numpy(std::move(out));
      },
      nb::arg("buf"), nb::arg("offsets"), nb::arg("lengths"), "The CRC-32 of each (offset, length) range of buf.");
  m.def(
      "zstd_decompress_bounded",
      [](nb::handle payload, uint64_t limit, const std::string& what) {
        const BufferView view(payload);
        std::vector<uint8_t> raw;
        {
          nb::gil_scoped_release released;
          raw = storage::decompress_bounded(view.data(), static_cast<size_t>(view.size()), limit, what);
        }
        return nb::bytes(reinterpret_cast<const char*>(raw.data()), raw.size());
      },
      nb::arg("payload"), nb::arg("limit"), nb::arg("what"),
      "One zstd frame that declares its content size, at most limit bytes, and nothing after it (spec §3.3).");
  m.def(
      "check_value_counts",
      [](Array<const uint64_t> counts, int64_t nnz, const std::string& what) {
        storage::check_value_counts(span_of(counts), nnz, what);
      },
      nb::arg("counts"), nb::arg("nnz"), nb::arg("what"),
      "Rules K13/G3: a chunk's value counts add up to its nonzeros, each below 2**40 (else CorruptFileError).");
  m.def(
      "format3_chunk_tables",
      [](nb::handle gap_section, nb::handle value_section, int64_t nnz, Array<const int64_t> tile_n,
         Array<const int64_t> tile_k, const std::string& what) {
        const BufferView gaps(gap_section);
        std::optional<BufferView> values;
        if (!value_section.is_none()) values.emplace(value_section);
        nb::gil_scoped_release released;
        return storage::format3_tables(
            Span<const uint8_t>{gaps.data(), gaps.size()},
            values ? Span<const uint8_t>{values->data(), values->size()} : Span<const uint8_t>{}, values.has_value(), nnz,
            span_of(tile_n), span_of(tile_k), what);
      },
      nb::arg("gap_section"), nb::arg("value_section").none(), nb::arg("nnz"), nb::arg("tile_n"), nb::arg("tile_k"),
      nb::arg("what"),
      "A format-3 chunk's ChunkTables3 from the stored bytes of its gaps.counts and values.counts (None: "
      "values not coded), rules K13/G3, G1 and G2 checked (CorruptFileError naming `what`, the chunk).");
  m.def(
      "pread_runs",
      [](int fd, Array<uint8_t> out, Array<const int64_t> run_at, Array<const int64_t> run_start) {
        const int64_t n = static_cast<int64_t>(run_start.shape(0)), size = static_cast<int64_t>(out.shape(0));
        if (static_cast<int64_t>(run_at.shape(0)) != n + 1)
          throw std::invalid_argument("pread_runs: run_at needs one item more than run_start");
        const int64_t* at = run_at.data();
        const int64_t* start = run_start.data();
        if (at[0] < 0 || at[n] > size) throw std::invalid_argument("pread_runs: the runs do not fit the buffer");
        for (int64_t r = 0; r < n; ++r)
          if (at[r + 1] < at[r] || start[r] < 0 || start[r] > INT64_MAX - (at[r + 1] - at[r]))
            throw std::invalid_argument("pread_runs: a run is out of order or out of range");
        nb::gil_scoped_release released;
        return storage::pread_runs(fd, out.data(), span_of(run_at), span_of(run_start));
      },
      nb::arg("fd"), nb::arg("out"), nb::arg("run_at"), nb::arg("run_start"),
      "Read run r of the descriptor (file offset run_start[r]) into out[run_at[r]: run_at[r + 1]], every run in "
      "one call: 0 when all bytes were read, -1 when the file ended first, else the errno of a failed read.");
  m.def("crc32_path", &crc32_path, "The CRC-32 implementation in use: 'vpclmulqdq', 'pclmul' or 'portable'.");
  m.def("set_crc32_path", &set_crc32_path, nb::arg("widest"),
        "The widest CRC-32 implementation allowed ('vpclmulqdq', 'pclmul' or 'portable'); returns the previous one.");
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const storage::SinrError& e) {
      nb::object cls = nb::module_::import_("scinrcodec.errors").attr(e.kind());
      PyErr_SetString(cls.ptr(), e.what());
    }
  });
  m.def(
      "items_from_planes",
      [](Array<const uint8_t> planes, int64_t item_size) {
        const int64_t n = static_cast<int64_t>(planes.shape(0));
        if (item_size < 1 || n % item_size != 0)
          throw nb::value_error("items_from_planes: the planes do not hold whole items of that size");
        Owned<uint8_t> out(n);
        {
          nb::gil_scoped_release release;
          storage::items_from_planes(planes.data(), static_cast<uint64_t>(n / item_size),
                                     static_cast<size_t>(item_size), out.span().data);
        }
        return out.release();
      },
      nb::arg("planes").noconvert(), nb::arg("item_size"),
      "The bytes of items stored as byte planes (byte j of item i at j * count + i), item after item.");
  nb::class_<MatrixReader>(m, "ContainerReader",
                           "A .sinr matrix read by the C++ container reader (the R package's reader).")
      .def("__init__",
           [](MatrixReader* self, const std::string& path, const std::string& matrix) {
             new (self) MatrixReader(std::make_shared<storage::FileSource>(path), matrix);
           },
           nb::arg("path"), nb::arg("matrix") = std::string())
      .def_static(
          "adopt",
          [](int fd, const std::string& name, std::tuple<int64_t, int64_t, uint64_t, uint64_t> stamp,
             const std::string& matrix) {
            const storage::FileStamp expected{std::get<0>(stamp), std::get<1>(stamp), std::get<2>(stamp),
                                              std::get<3>(stamp)};
            return std::make_unique<MatrixReader>(std::make_shared<storage::FileSource>(fd, name, expected), matrix);
          },
          nb::arg("fd"), nb::arg("name"), nb::arg("stamp"), nb::arg("matrix"),
          "A reader of the open descriptor fd (which it owns from now on, and closes), the file version "
          "stamp (size, mtime_ns, inode, device); FileChangedError if the file is no longer that version.")
      .def_prop_ro("shape", [](const MatrixReader& r) { return std::make_tuple(r.n_genes(), r.n_cells()); })
      .def_prop_ro("nnz", &MatrixReader::nnz)
      .def_prop_ro("mode", &MatrixReader::mode)
      .def_prop_ro("max_error", &MatrixReader::max_error)
      .def_prop_ro("version", [](const MatrixReader& r) { return std::make_tuple(r.major(), r.minor()); })
      .def_prop_ro("name", &MatrixReader::name)
      .def_prop_ro("matrix_names", &MatrixReader::matrix_names)
      .def_prop_ro("chunk_starts", &MatrixReader::chunk_starts)
      .def_prop_ro("n_segments", &MatrixReader::n_segments)
      .def("gene_ids", [](MatrixReader& r) { return names(r.gene_ids()); })
      .def("gene_names", [](MatrixReader& r) { return names(r.gene_names()); })
      .def("feature_types", [](MatrixReader& r) { return names(r.feature_types()); })
      .def("cell_names", [](MatrixReader& r) { return names(r.cell_names()); })
      .def("entry", &MatrixReader::entry, nb::arg("gene"), nb::arg("cell"), NoGil())
      .def("genes", [](MatrixReader& r, const std::vector<int64_t>& g) { return columns(unlocked([&] { return r.genes(g); })); },
           nb::arg("genes"), "((n_rows, n_cols), indptr, indices, values) of these genes over every cell (CSC).")
      .def("cells", [](MatrixReader& r, const std::vector<int64_t>& c) { return columns(unlocked([&] { return r.cells(c); })); },
           nb::arg("cells"), "((n_rows, n_cols), indptr, indices, values) of every gene over these cells (CSC).")
      .def("cells_by_gene",
           [](MatrixReader& r, const std::vector<int64_t>& c) {
             return columns(unlocked([&] { return storage::transposed(r.cells(c)); }));
           },
           nb::arg("cells"),
           "cells() as the compressed rows of its genes: ((n_cols, n_rows), indptr over genes, the request's "
           "positions, values) (the CSR of genes x cells).")
      .def("_set_run_entries", &MatrixReader::set_run_entries, nb::arg("entries"),
           "Decode whole chunks for cells() in runs of about this many nonzeros (tests: a few, to cross runs).")
      .def("set_threads", &MatrixReader::set_threads, nb::arg("threads"),
           "Decode a read of a few cells on up to this many threads (when it holds enough nonzeros).")
      .def("set_keep_bytes", &MatrixReader::set_keep_bytes, nb::arg("bytes"),
           "Of a chunk cells() decodes whole, keep the cells after the wanted ones that fit in this many bytes.")
      .def("block",
           [](MatrixReader& r, std::optional<std::vector<int64_t>> g, std::optional<std::vector<int64_t>> c) {
             return columns(unlocked([&] { return r.block(g ? &*g : nullptr, c ? &*c : nullptr); }));
           },
           nb::arg("genes").none(), nb::arg("cells").none(),
           "The genes x cells block (None: all) as ((n_rows, n_cols), indptr, indices, values) (CSC).")
      .def("whole", [](MatrixReader& r, int threads) { return columns(unlocked([&] { return r.whole(threads); })); },
           nb::arg("threads") = 1,
           "((n_genes, n_cells), indptr, indices, values): the whole matrix (CSC), checksums verified.")
      .def("moments",
           [](MatrixReader& r, int threads) {
             storage::MatrixMoments m = unlocked([&] { return r.moments(threads); });
             const auto arrays = [](MomentArrays& a) {
               return std::make_tuple(to_numpy(std::move(a.nonzeros)), to_numpy(std::move(a.sums)),
                                      to_numpy(std::move(a.squares_low)), to_numpy(std::move(a.squares_high)));
             };
             return std::make_tuple(to_numpy(std::move(m.genes)), arrays(m.of_genes), arrays(m.of_cells));
           },
           nb::arg("threads") = 1,
           "(stored genes, (nonzeros, sums, squares_low, squares_high) of each of them, the same of each "
           "cell): one pass, checksums verified (what R's rowSums, rowVars... come from).");
}

}  // namespace sinr::python
