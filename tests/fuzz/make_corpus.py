"""Seed the fuzz corpus with small real .sinr files in every mode (run once; outputs are committed).

Run from the repository root: python tests/fuzz/make_corpus.py
"""
from pathlib import Path

import scinrcodec as sinr
from scinrcodec.io.sources import ScipySource

HERE = Path(__file__).parent
DATA = HERE.parent / "data"

if __name__ == "__main__":
    m = sinr.read_matrix(DATA / "pbmc500_3p_lt_x_50genes")
    small = ScipySource(m.matrix()[:30, :25], m.gene_ids[:30], m.gene_names[:30], m.cell_names(0, 25))
    modes = {"lossless": dict(siren="never"), "maxerror": dict(mode="max-error", max_error=2, siren="never"),
             "inr": dict(mode="inr-only", steps=20, width=8), "siren": dict(siren="force", steps=20, width=8)}
    for path in (HERE / "corpus").glob("*"):
        path.unlink()
    for name, options in modes.items():
        out = HERE / "corpus" / f"{name}.sinr"
        sinr.encode(small, out, force=True, tile_nnz=16, patch_nnz=64, chunk_cells=10, progress=False, **options)
        (HERE / "corpus" / f"{name}.bin").write_bytes(b"\x00" + out.read_bytes())
        (HERE / "corpus" / f"{name}.fixed.bin").write_bytes(b"\x01" + out.read_bytes())
        out.unlink()
