"""A base install (pip install scinrcodec, no extras): what needs an extra's package says so in one
line naming the extra. Each package is made absent as where it is not installed (None in
sys.modules: import fails, importlib.util.find_spec finds nothing)."""
from __future__ import annotations

import sys

import pytest

import scinrcodec as sinr
from conftest import DATA
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
