"""What a packager or a user building the package meets: pyproject's metadata and what the build
says when the machine lacks what it needs."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_a_missing_libzstd_names_the_package_to_install(tmp_path):
    """CMake's own 'Could not find ZSTD_INCLUDE_DIR using the following files: zstd.h' named no package;
    the configure step now says what to install. Every search is rooted in an empty folder, as on a
    machine without libzstd's development files."""
    empty = tmp_path / "root"
    empty.mkdir()
    run = subprocess.run(["cmake", "-S", str(ROOT / "native"), "-B", str(tmp_path / "build"),
                          f"-DCMAKE_FIND_ROOT_PATH={empty}", "-DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY",
                          "-DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY", "-DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    message = " ".join(run.stderr.split())
    assert "libzstd (zstd.h and the library) not found: install its development files (Debian, Ubuntu: " \
           "apt-get install libzstd-dev;" in message, run.stderr
