"""`sinr demo`: encode the real matrix bundled with the package, check it, compare sizes."""
from __future__ import annotations

import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from .encoder.driver import encode
from .errors import SinrError
from .io.readers import read_matrix
from .wholefile.matrix import open as open_sinr
from .report import describe

DEMO_FOLDER = "pbmc500_3p_50genes"


def demo_data() -> Path:
    """The bundled Cell Ranger output: 500 PBMCs (3' LT v3.1, Chromium X), cut to 50 genes by 10x."""
    return Path(str(resources.files("scinrcodec") / "data" / DEMO_FOLDER))


def run_demo(workdir: Path | None = None, *, force: bool = False) -> str:
    """Encode the bundled 10x file, decode it, check it is exact; the report `sinr demo` prints. A
    demo.sinr already in `workdir` is replaced only with force, as any output."""
    folder = demo_data()
    source = folder / "filtered_feature_bc_matrix.h5"
    original = read_matrix(source)
    counts = original.matrix().tocsr()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(workdir or tmp) / "demo.sinr"
        started = time.perf_counter()
        encode(original, out, force=force or workdir is None, progress=False)
        encode_seconds = time.perf_counter() - started
        with open_sinr(out) as matrix:
            started = time.perf_counter()
            decoded = matrix.to_scipy()
            decode_seconds = time.perf_counter() - started
            if (decoded != counts).nnz or matrix.cell_names != original.cell_names(0, counts.shape[1]) \
                    or matrix.gene_ids != original.gene_ids:
                raise SinrError("demo: decoded matrix differs from the input")
            gene = int(np.argmax(np.diff(counts.indptr)))
            if not np.array_equal(matrix.gene(gene), counts[gene].toarray().ravel()):
                raise SinrError("demo: random access to a gene differs from the input")
            summary = describe(matrix)
        sinr_size, h5_size = out.stat().st_size, source.stat().st_size
        mtx_size = sum((folder / n).stat().st_size for n in ("matrix.mtx.gz", "features.tsv.gz", "barcodes.tsv.gz"))
    return "\n".join([
        summary, "",
        f"round trip: exact ({counts.nnz:,} nonzeros), encode {encode_seconds:.1f} s, "
        f"decode {decode_seconds * 1e3:.0f} ms",
        f"{'10x HDF5 (Cell Ranger)':<26}{h5_size:>10,} bytes",
        f"{'10x mtx.gz + tsv.gz':<26}{mtx_size:>10,} bytes",
        f"{'.sinr':<26}{sinr_size:>10,} bytes  ({sinr_size / h5_size:.2f}x the 10x HDF5 file)",
    ] + ([] if workdir else ["(demo.sinr, in a temporary folder, is removed: `sinr demo --workdir DIR` keeps it)"]))
