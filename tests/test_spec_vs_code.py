"""The spec and the code state the same facts: section tables and limits are parsed out of
spec/sinr-format.md and compared with storage/layout.py and limits.py, so neither can drift."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from scinrcodec import limits
from scinrcodec.storage.layout import (ANNDATA_PARTS, CHUNK_SECTIONS, FILE_SECTIONS, MATRIX_SECTIONS, MSGPACK, RAW,
                                       ZSTD_ARRAY, ZSTD_TEXT)

SPEC = (Path(__file__).resolve().parent.parent / "spec" / "sinr-format.md").read_text(encoding="utf-8")
ITEM_TYPES = {"uint8": "u1", "int16": "i2", "uint32": "u4", "uint64": "u8"}


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


def encoding_of(text: str) -> tuple[str, str | None]:
    """(layout encoding, dtype) of a spec encoding cell such as 'zstd array of uint32'."""
    if text.startswith("zstd names"):
        return ZSTD_TEXT, None
    if text.startswith("zstd array"):
        item = re.search(r"of (\w+)", text)
        return ZSTD_ARRAY, ITEM_TYPES[item.group(1)] if item else None
    if text.startswith("raw"):
        return RAW, None
    if text.startswith("MessagePack"):
        return MSGPACK, None
    raise AssertionError(f"unknown encoding in the spec: {text!r}")


@pytest.mark.parametrize("heading, sections", [("#### 5.3.1 Sections", MATRIX_SECTIONS),
                                               ("#### 5.4.3 Chunk sections", CHUNK_SECTIONS)])
def test_matrix_and_chunk_section_tables_match_the_layout(heading, sections):
    rows = table_after(heading)
    assert [names_in(row["name"])[0] for row in rows] == list(sections), "section names or their order differ"
    for row in rows:
        name = names_in(row["name"])[0]
        spec = sections[name]
        assert (spec.encoding, spec.dtype) == encoding_of(row["encoding"]), name
        assert spec.required == row["required"].startswith("yes"), name  # "if and only if ...": not always there


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
    assert upper("a name") == limits.MAX_NAME_BYTES
    assert upper("footer (compressed, and decompressed)") == limits.MAX_FOOTER_BYTES
    assert upper("chunk header (compressed, and decompressed)") == limits.MAX_CHUNK_HEADER_BYTES
    assert upper("a zstd array (decompressed)") == limits.MAX_SECTION_BYTES
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
