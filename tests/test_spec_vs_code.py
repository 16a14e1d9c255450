"""The spec and the code state the same facts: section tables, stage lists and limits are parsed out
of spec/sinr-format.md and compared with storage/layout.py, codec/stages.py and limits.py, so neither
can drift; and the spec's independent reference decoder (spec/reference_decoder.py) reads the
writer's format-3 files of real fixtures to the input matrices."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import zstandard

import scinrcodec
from conftest import DATA, reference_decoder, require
from scinrcodec import limits
from scinrcodec.codec.stages import MODES, stages_for
from scinrcodec.storage.container import LARGE_TEXT_BYTES, pack_shuffled, pack_strings, unpack_shuffled, unpack_strings
from scinrcodec.storage.layout import (ANNDATA_PARTS, CHUNK_SECTIONS_BY_MAJOR, FILE_SECTIONS, MATRIX_SECTIONS, MSGPACK,
                                       RAW, ZSTD_ARRAY, ZSTD_SHUFFLED, ZSTD_TEXT, Sizes)

SPEC = (Path(__file__).resolve().parent.parent / "spec" / "sinr-format.md").read_text(encoding="utf-8")
ITEM_TYPES = {"uint8": "u1", "int16": "i2", "uint32": "u4", "uint64": "u8"}
SIREN_FIT = dict(steps=40, batch=512, width=16)  # a small fit: the file's coding paths, not its size
rd = reference_decoder()


def table_after(heading: str) -> list[dict[str, str]]:
    """The first markdown table after `heading`, as one dict per row keyed by the header cells."""
    start = SPEC.index(f"\n{heading}\n")
    lines = SPEC[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    header, body = rows[0], rows[2:]
    return [dict(zip(header, row)) for row in body]


def names_in(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def encoding_of(text: str, major: int = 3) -> tuple[str, str | None]:
    """(layout encoding, dtype) of a spec encoding cell such as 'zstd array of uint32', in a file of
    this major version (a cell may add "(... in a version 2 file)")."""
    version2 = re.fullmatch(r"(.*) \((.*) in a version 2 file\)", text)
    if version2:
        text = version2.group(2 if major == 2 else 1)
    if text.startswith("zstd names"):
        return ZSTD_TEXT, None
    if text.startswith("zstd shuffled array"):
        item = re.search(r"of (\w+)", text)
        return ZSTD_SHUFFLED, ITEM_TYPES[item.group(1)] if item else None
    if text.startswith("zstd array"):
        item = re.search(r"of (\w+)", text)
        return ZSTD_ARRAY, ITEM_TYPES[item.group(1)] if item else None
    if text.startswith("raw"):
        return RAW, None
    if text.startswith("MessagePack"):
        return MSGPACK, None
    raise AssertionError(f"unknown encoding in the spec: {text!r}")


def in_version(row: dict[str, str], major: int) -> bool:
    """Whether a row of a section table applies to files of this major version."""
    return not (major == 2 and "absent in a version 2 file" in row["required"])


@pytest.mark.parametrize("heading, major, sections",
                         [("#### 5.3.1 Sections", major, MATRIX_SECTIONS) for major in (2, 3)]
                         + [("#### 5.4.3 Chunk sections", major, CHUNK_SECTIONS_BY_MAJOR[major]) for major in (2, 3)])
def test_matrix_and_chunk_section_tables_match_the_layout(heading, major, sections):
    rows = [row for row in table_after(heading) if in_version(row, major)]
    assert [names_in(row["name"])[0] for row in rows] == list(sections), "section names or their order differ"
    for row in rows:
        name = names_in(row["name"])[0]
        spec = sections[name]
        assert (spec.encoding, spec.dtype) == encoding_of(row["encoding"], major), name
        assert spec.required == row["required"].startswith("yes"), name  # "if and only if ...": not always there


def test_the_chunk_header_table_lists_every_key_the_writer_writes(tmp_path):
    """§5.4.2's chunk header map against the headers of a raw-like file, whose chunk stores its names
    as barcodes (barcode_length and barcode_suffix had been only in §5.7's prose)."""
    from scinrcodec.reader.matrix import MatrixReader
    from test_cell_barcodes import _barcoded, _raw_like

    path = tmp_path / "raw.sinr"
    scinrcodec.encode(_barcoded(_raw_like(8000, 3), 3)[0], path, siren="never", progress=False)
    rows = {names_in(row["key"])[0]: row for row in table_after("#### 5.4.2 The chunk block and its header")}
    with MatrixReader(path) as m:
        header = m.index._chunk_sections(0)[1]
        assert m.index.chunk(0).sections.has("cells.barcodes")
    assert sorted(header) == sorted(rows)
    assert {key for key, row in rows.items() if row["required"] == "yes"} < set(header)


def test_the_preamble_names_the_minor_versions_the_readers_know():
    """§2.1's `minor` row: the minor versions defined for each major are those the readers know
    (storage.container.READ_MINORS); it had said 0 or 1 for major 3 once 3.2 was defined."""
    from scinrcodec.storage.container import READ_MINORS

    row = {r["field"]: r for r in table_after("### 2.1 Preamble")}["`minor`"]["value"]
    said = re.search(r"those defined are 0 to (\d+) for major 3 and 0 or (\d+) for major 2", row)
    assert said, row
    assert {3: int(said.group(1)), 2: int(said.group(2))} == READ_MINORS


def test_the_chunk_rules_a_first_read_checks_are_the_rules_of_the_chunk_table():
    """§9.3 says which of its rules hold before a read returns a chunk's names and which before
    anything of its bands or tiles: the second set with the band's rule is the table's rules, so a
    rule added to the table is placed (CP1 had been left out); the names' set lies within it and
    holds the rule whose row says it is checked before the names are returned (CB3 had been placed at
    the first touch, where the Python reader and the core do not decode the names)."""
    rows = table_after("### 9.3 Chunk")
    when = re.search(r"before it returns the chunk's names, the rules they derive from\s+\((.*?)\);\s+before it "
                     r"returns anything of the chunk's bands \((\w+)\)\s+or tiles \(§9\.4\), every rule of the "
                     r"table \((.*?)\)\.", SPEC, re.S)
    assert when, "§9.3's sentence on when its rules are checked moved"
    names, every = ({f"{prefix}{i}" for prefix, low, high in re.findall(r"\b([A-Z]+)(\d+)(?:–[A-Z]+(\d+))?", group)
                     for i in range(int(low), int(high or low) + 1)} for group in when.group(1, 3))
    assert sorted(every | {when.group(2)}) == sorted(row["id"] for row in rows) and when.group(2) not in every
    assert names < every
    assert {row["id"] for row in rows if "before the chunk's names are returned" in row["rule"]} <= names
    from test_conformance import NAME_RULES  # what the conformance vectors hold a names read to

    assert NAME_RULES == names


def test_count_sections_have_the_spec_rows_per_version():
    """§5.4.3: values.counts holds 96 · 231 items in a version 3 file, 48 · 231 in a version 2 file;
    gaps.counts 32 · 231."""
    rows = {names_in(row["name"])[0]: row["count"] for row in table_after("#### 5.4.3 Chunk sections")}
    counts = re.findall(r"`(\d+) · 231`", rows["values.counts"])
    assert [int(c) * 231 for c in counts] == [CHUNK_SECTIONS_BY_MAJOR[m]["values.counts"].expected(Sizes())
                                              for m in (3, 2)]
    assert rows["gaps.counts"] == "`32 · 231`" == f"`{CHUNK_SECTIONS_BY_MAJOR[3]['gaps.counts'].expected(Sizes()) // 231} · 231`"


def test_shuffled_array_example_matches_the_code():
    """§3.3's example of a zstd shuffled array: its content is the items' byte planes, and the code
    writes and reads exactly those bytes."""
    start = SPEC.index("- **zstd shuffled array**")
    example = re.search(r"Example: the two uint64 items `(0x[0-9A-F]+)` and `(\d+)` are the content\s+`([0-9A-F ]+)`",
                        SPEC[start:start + 2000])
    items = np.array([int(example.group(1), 16), int(example.group(2))], np.uint64)
    content = bytes.fromhex(example.group(3))
    packed = pack_shuffled(items, "u8")
    assert zstandard.ZstdDecompressor().decompress(packed) == content
    assert unpack_shuffled(packed, "u8", 2, what="example").tolist() == items.tolist()


def test_large_gene_tables_pack_shallow_within_the_window_limit():
    """§3.3's note: gene tables from LARGE_TEXT_BYTES on are packed with a shallow search, not level
    16, and cell barcodes never are; every frame within the 8 MiB window a writer SHOULD keep, and
    read back exactly."""
    tables = (MATRIX_SECTIONS, FILE_SECTIONS, *CHUNK_SECTIONS_BY_MAJOR.values())
    shallow = {spec.name for table in tables for spec in table.values() if spec.shallow}
    assert shallow == {"names.gene_ids", "names.gene_names", "names.feature_types"}
    for count in (2_000, 40_000, 1_500_000):  # 32 KB, 640 KB, 24 MB of Ensembl-like ids
        ids = [f"ENSG{i * 7:011d}" for i in range(count)]
        at_16 = zstandard.ZstdCompressor(level=16).compress("\n".join(ids).encode())
        for table in (True, False):
            packed = pack_strings(ids, 16, shallow=table)
            assert (packed != at_16) == (table and len("\n".join(ids)) >= LARGE_TEXT_BYTES)
            assert zstandard.get_frame_parameters(packed).window_size <= 8 << 20
            assert unpack_strings(packed, count, what="ids") == ids


@pytest.mark.parametrize("major, rule", [(3, "R3"), (2, "M5")])
def test_stage_lists_match_the_writer(major, rule):
    """§5.2: each version's stage list per mode is the one the writer stores."""
    start = SPEC.index("### 5.2 Stages and modes")
    heading = next(line for line in SPEC[start:].splitlines()
                   if line.startswith(("The list MUST be exactly", "and in a version")) and f"(rule {rule})" in line)
    rows = table_after(heading)
    lossless = names_in(rows[0]["stages"])
    listed = {"lossless": lossless, "max-error": lossless, "inr-only": names_in(rows[2]["stages"])}
    assert [row["mode"].strip("`") for row in rows] == list(MODES)
    for mode in MODES:
        written = stages_for(mode, 1 if mode == "max-error" else 0, 1, 1, 1, major=major)
        assert [stage["id"] for stage in written] == listed[mode], mode


def test_file_section_table_matches_the_layout():
    rows = table_after("### 14.1 The file-level section table")
    names = []
    for row in rows:
        listed = names_in(row["name"])
        if listed[0] == "anndata.P":
            assert tuple(listed[2:]) == ANNDATA_PARTS  # after `anndata.P` and `P`
            listed = [f"anndata.{part}" for part in ANNDATA_PARTS]
        for name in listed:
            names.append(name)
            encoding, dtype = encoding_of(row["encoding"].replace(" (§3.3)", "").replace(" (§3.5)", ""))
            if encoding == ZSTD_ARRAY:
                dtype = ITEM_TYPES[row["item type"]]
            assert (FILE_SECTIONS[name].encoding, FILE_SECTIONS[name].dtype) == (encoding, dtype), name
    assert names == list(FILE_SECTIONS)


def number(expression: str) -> int:
    """An integer written the spec's way: `2^31 − 1`, `4096`, `2^28`."""
    text = expression.replace("−", "-").replace("^", "**").strip()
    assert re.fullmatch(r"[0-9*+\- ]+", text), expression
    return int(eval(text))  # noqa: S307 (digits and operators only, checked above)


def test_limits_table_matches_limits_py():
    rows = {row["quantity"]: row["limit"].strip("`") for row in table_after("## 10. Limits")}

    def upper(quantity: str) -> int:
        limit = rows[quantity]
        bound = re.split(r"\.\.|<=|<", limit.split("`")[0])[-1]
        return number(bound.split(" bytes")[0].split(";")[0])

    assert upper("genes, cells of a matrix") == limits.MAX_DIMENSION
    assert upper("an entry's value") == limits.MAX_COUNT
    assert upper("entries of a tile (`h_b · w`)") == limits.MAX_TILE_ENTRIES
    assert upper("one `values.counts` item") == limits.MAX_CHUNK_NNZ
    assert upper("one `gaps.counts` item") == limits.MAX_CHUNK_NNZ
    assert upper("a name") == limits.MAX_NAME_BYTES
    assert upper("footer (compressed, and decompressed)") == limits.MAX_FOOTER_BYTES
    assert upper("chunk header (compressed, and decompressed)") == limits.MAX_CHUNK_HEADER_BYTES
    assert upper("a zstd array or zstd shuffled array (decompressed)") == limits.MAX_SECTION_BYTES
    assert upper("SIREN layers") == limits.MAX_SIREN_LAYERS
    assert upper("SIREN layer width (`n_out`)") == limits.MAX_SIREN_WIDTH
    assert upper("SIREN `shift`") == limits.MAX_SIREN_SHIFT
    assert upper(r"SIREN `\|w_mult\|`, `\|b_mult\|`") == limits.MAX_SIREN_MULTIPLIER
    assert upper("SIREN accumulator bound") == limits.SIREN_ACCUMULATOR_BOUND
    assert upper("`max_error` `E`") == limits.MAX_ERROR_LIMIT
    targets = [number(r.split("..")[1]) for r in rows["`tile_nnz`, `patch_nnz`, `chunk_cells`"].split("`, `")]
    assert targets == [limits.MAX_TILE_NNZ, limits.MAX_PATCH_NNZ, limits.MAX_DIMENSION]


def test_defaults_the_spec_quotes_are_the_code_defaults():
    note = re.search(r"defaults are `chunk_cells = (\d+)` and\s+`tile_nnz = (\d+)`", SPEC)
    assert note, "the spec's note on the reference writer's defaults moved"
    assert (int(note.group(1)), int(note.group(2))) == (limits.DEFAULT_CHUNK_CELLS, limits.DEFAULT_TILE_NNZ)


# The tracked text the section references below are checked in (the spec's own files cite themselves).
CITING_TREES = ("scinrcodec", "native", "r", "tests", "benchmarks", ".ci", "README.md")
SECTION_REF = re.compile(r"(RFC \d+ )?§ ?([A-D]|\d+)((?:\.\d+)*)|Appendix ([A-D](?:\.\d+)*)")
DRAFT_MARKS = ("D" + "§", "spec/" + "drafts")  # the removed format-3 draft's citations (spelt apart here)


def test_every_section_the_code_cites_is_a_heading_of_the_spec():
    """Every `§n`, `§C.n` or `Appendix X.n` in the code, tests, docs and tools names a heading of
    spec/sinr-format.md (so a renumbered spec cannot leave a comment pointing elsewhere), and none
    cites the removed format-3 draft (DRAFT_MARKS)."""
    root = Path(__file__).resolve().parent.parent
    headings = {m.group(1) for m in re.finditer(r"^#+ (?:Appendix )?([A-Z\d]+(?:\.\d+)*)\.? ", SPEC, flags=re.M)}
    files = subprocess.run(["git", "ls-files", "-z", *CITING_TREES], cwd=root, capture_output=True, check=True,
                           text=True).stdout.split("\0")
    assert len(files) > 100, "git ls-files listed too little: run from a checkout"
    wrong = []
    for name in filter(None, files):
        try:
            text = (root / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(mark in line for mark in DRAFT_MARKS):
                wrong.append(f"{name}:{number}: the draft: {line.strip()}")
            for m in SECTION_REF.finditer(line):
                cited = m.group(4) or m.group(2) + m.group(3)
                if not m.group(1) and cited not in headings:
                    wrong.append(f"{name}:{number}: {cited}: {line.strip()}")
    assert not wrong, "\n".join(wrong)


# ------------------------------------------------------------ the writer's format-3 files, by the spec

WRITER3_CASES = {  # real fixtures, every mode, a SIREN in every band of one, small tiles for many classes
    "lossless": ("pbmc4k_v2_soupx_half", dict(tile_nnz=32, chunk_cells=40, siren=False)),
    "lossless_default": ("visium_spaceranger3", dict(siren=False)),
    "max_error": ("mouse_gut_cimseq_smartseq2", dict(mode="max-error", max_error=3, siren=False)),
    "inr_only": ("pbmc500_3p_lt_x_50genes", dict(mode="inr-only", chunk_cells=40, **SIREN_FIT)),
    "siren": ("pbmc500_3p_lt_x_50genes", dict(siren="force", chunk_cells=40, tile_nnz=64, **SIREN_FIT)),
}


@pytest.mark.parametrize("case", list(WRITER3_CASES))
def test_reference_decoder_reads_the_writers_format_3(case, tmp_path):
    """spec/reference_decoder.py, written from the spec alone, decodes the writer's version 3 files
    of real fixtures to the input matrix (max-error: within E, inr-only: the same positions, values
    the chunk checksums tie to the writer's predictions), with the strict writer checks (both count
    sections are the histograms of the decoded tiles); the writer puts each band's rows in gene
    order (spec §5.4.5), and SIRENs where asked."""
    name, options = WRITER3_CASES[case]
    if case in ("inr_only", "siren"):
        require("torch")
    path = tmp_path / "m.sinr"
    scinrcodec.encode(DATA / name, path, format_version=3, jobs=1, progress=False, **options)
    data = path.read_bytes()
    f = rd.open_sinr(data)
    m = f.decode(strict=True)
    assert (f.major, f.minor, m.version) == (3, 0, "3.0")
    want = sp.csr_matrix(scinrcodec.read_matrix(DATA / name).matrix()).astype(np.int64)
    got = sp.csr_matrix((m.values, (m.genes, m.cells)), shape=m.shape)
    assert got.shape == want.shape and got.nnz == want.nnz
    assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
    E = f.max_error
    if f.mode == "lossless":
        assert np.array_equal(got.data, want.data)
    elif f.mode == "max-error":
        assert np.array_equal(got.data, np.minimum(1 + (want.data - 1 + E) // (2 * E + 1) * (2 * E + 1), 2**31 - 1))
        assert np.abs(got.data - want.data).max() <= E
    else:
        assert got.data.min() >= 1
    order, _ = rd.load_gene_order(f)
    sirens = 0
    for e in f.chunks:
        ch = rd.load_chunk(f, e)
        sirens += len(ch.sirens)
        for b in range(ch.n_bands):
            assert np.all(np.diff(order[ch.band_rows[b]:ch.band_rows[b + 1]]) > 0)
    assert (sirens > 0) == (case in ("inr_only", "siren"))
