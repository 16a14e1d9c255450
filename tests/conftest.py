from __future__ import annotations

from pathlib import Path

import pytest

from scinrcodec import read_matrix

DATA = Path(__file__).parent / "data"
DATASETS = ["pbmc4k_v2_soupx_half", "frozen_pbmc_donor_a_v1", "visium_spaceranger3",
            "mouse_gut_cimseq_smartseq2", "pbmc500_3p_lt_x_50genes"]
FAST = dict(siren=False, progress=False)
SMALL_SIREN = dict(siren=True, steps=40, batch=512, width=16, progress=False)


@pytest.fixture(scope="session")
def matrices():
    return {name: read_matrix(DATA / name) for name in DATASETS}


@pytest.fixture(scope="session")
def pbmc(matrices):
    return matrices["pbmc4k_v2_soupx_half"]
