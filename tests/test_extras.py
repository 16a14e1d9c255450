"""A base install (pip install scinrcodec, no extras): what needs an extra's package says so in one
line naming the extra. Each package is made absent as where it is not installed (None in
sys.modules: import fails, importlib.util.find_spec finds nothing)."""
from __future__ import annotations

import sys

import pytest
import scipy.sparse as sp

import scinrcodec as sinr
from conftest import DATA, SMALL_SIREN
from scinrcodec.io.matrix import CountMatrix
from scinrcodec.cli import main as sinr_main

SOURCE = DATA / "pbmc4k_v2_soupx_half"


@pytest.fixture
def no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)


@pytest.mark.parametrize("options, message", [
    (dict(siren="always"), "the SIREN needs torch: pip install 'scinrcodec[encode]', or use --siren never"),
    (dict(mode="inr-only"), "--inr-only needs torch to fit its SIRENs: pip install 'scinrcodec[encode]'"),
    (dict(device="cuda:0"), "--device 'cuda:0' is a torch device: pip install 'scinrcodec[encode]' for torch"),
    (dict(device="cuda:0", siren="never"),
     "--device 'cuda:0' is a torch device: pip install 'scinrcodec[encode]' for torch"),
])
def test_without_torch_a_siren_or_a_device_names_the_encode_extra(tmp_path, no_torch, options, message):
    """--device without torch had been ignored: an encode asked to fit on a GPU (or on 'banana') wrote
    its file without a word, where with torch an unusable device is refused."""
    for encode in (sinr.encode, sinr.encode_whole):
        with pytest.raises(sinr.InvalidInputError) as err:
            encode(DATA / "pbmc500_cellranger.h5", tmp_path / "out.sinr", **options)
        assert str(err.value) == message
    assert list(tmp_path.iterdir()) == []


def test_without_torch_the_default_encode_writes_without_sirens(tmp_path, no_torch):
    """siren='auto' (the default) tries SIRENs only where torch is there: without it the file is written."""
    result = sinr.encode(SOURCE, tmp_path / "out.sinr", jobs=1)
    assert result["nnz"] > 0 and (tmp_path / "out.sinr").is_file()


def test_cli_device_without_torch_is_one_line(tmp_path, no_torch, capsys):
    """The same from the command line: one error line, status 1."""
    assert sinr_main(["encode", str(SOURCE), str(tmp_path / "out.sinr"), "--device", "banana"]) == 1
    assert capsys.readouterr().err == (
        "sinr: error: --device 'banana' is a torch device: pip install 'scinrcodec[encode]' for torch\n")


@pytest.mark.parametrize("options, how", [(dict(mode="inr-only"), "--inr-only"), (dict(), "--siren always")])
def test_appending_to_a_siren_file_without_torch_names_the_encode_extra(tmp_path, monkeypatch, options, how):
    """New cells of a file written with --inr-only or --siren always are coded so too: without torch,
    `sinr append` had failed as 'internal error (ModuleNotFoundError: No module named 'torch')'."""
    pytest.importorskip("torch", reason="writing the file fits SIRENs")
    source = sinr.read_matrix(SOURCE)
    counts = source.matrix().tocsc()
    path = tmp_path / "siren.sinr"
    sinr.encode(sp.csc_matrix(counts[:, :40]), path, **{**SMALL_SIREN, "steps": 5, **options})
    before = path.read_bytes()
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(sinr.InvalidInputError) as err:
        sinr.append(path, CountMatrix(counts[:, 40:]))
    assert str(err.value) == (f"{path}: its cells are coded with SIRENs ({how}), as new cells must be, which needs "
                              "torch: pip install 'scinrcodec[encode]'")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["siren.sinr"]
