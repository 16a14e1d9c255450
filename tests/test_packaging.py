"""What a packager or a user building the package meets: pyproject's metadata and what the build
says when the machine lacks what it needs."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11's")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_licence_text_ships():
    """The MIT licence asks for its text in every copy: the sdist and the wheel carried none (pyproject
    said license = "MIT" alone). license-files names it; it is the R package's licence (r/LICENSE: the
    year and holder of R's MIT template) in full."""
    files = pyproject()["project"]["license-files"]
    assert files == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    r_licence = dict(line.split(": ", 1) for line in (ROOT / "r" / "LICENSE").read_text().splitlines())
    assert text.startswith(f"MIT License\n\nCopyright (c) {r_licence['YEAR']} {r_licence['COPYRIGHT HOLDER']}\n")
    assert "Permission is hereby granted, free of charge" in text and 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_the_version_is_written_once():
    """pyproject's version = "3.0.0" beside scinrcodec.__version__ (which `sinr --version` prints and
    every file's writer field records) was the same fact twice; the metadata now reads it from
    __init__.py, and the R package, which needs its own DESCRIPTION, says the same."""
    import scinrcodec

    config = pyproject()
    assert "version" not in config["project"] and config["project"]["dynamic"] == ["version"]
    assert config["tool"]["scikit-build"]["metadata"]["version"] == {
        "provider": "scikit_build_core.metadata.regex", "input": "scinrcodec/__init__.py"}
    description = dict(line.split(": ", 1) for line in (ROOT / "r" / "DESCRIPTION").read_text().splitlines()
                       if re.match(r"[A-Za-z@/]+: ", line))
    assert description["Version"] == scinrcodec.__version__


def test_the_build_floor_reads_this_metadata():
    """scikit-build-core 0.10, which build-system.requires allowed, refuses an SPDX license (PEP 639):
    'Field "project.license" has an invalid type, expecting a dictionary of strings (got "MIT")'; 0.11
    reads it and license-files (each checked by building the sdist with that version, no isolation)."""
    config = pyproject()
    (floor,) = [r for r in config["build-system"]["requires"] if r.startswith("scikit-build-core")]
    version = tuple(int(part) for part in floor.split(">=")[1].split("."))
    if isinstance(config["project"]["license"], str) or "license-files" in config["project"]:
        assert version >= (0, 11), floor


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


# An API the package calls and the first release of the distribution that has it: a floor below it
# installs and passes `pip check`, then fails at run time.
APIS = [("visititems_links", "h5py", (3, 11))]


@pytest.mark.parametrize("api, distribution, first", APIS)
def test_each_dependency_floor_has_what_the_package_calls(api, distribution, first):
    """h5py>=3.8 installed h5py 3.8, whose File has no visititems_links: `sinr demo` and every HDF5
    input failed ('File' object has no attribute 'visititems_links'; found installing the wheel with
    every base dependency at its floor)."""
    source = "\n".join(path.read_text() for path in (ROOT / "scinrcodec").rglob("*.py"))
    assert re.search(rf"\.{api}\(", source), f"nothing calls {api} any more: drop it from APIS"
    (floor,) = [d.split(">=")[1].split(",")[0] for d in pyproject()["project"]["dependencies"]
                if re.match(rf"{distribution}\s*>=", d)]
    assert tuple(int(part) for part in floor.split(".")) >= first, (distribution, floor)


# Imported names whose distribution is named otherwise, or that come with another declared one.
DISTRIBUTIONS = {"distributed": "dask", "botocore": "s3fs"}  # dask[distributed]; s3fs brings botocore


def test_every_package_imported_is_declared():
    """pandas was imported by io and wholefile but declared nowhere (it came with anndata); every module
    the package imports is now the standard library's, a base dependency's or an extra's, or one the
    wheel ships (sinr_command, the console script)."""
    own = set(pyproject()["tool"]["scikit-build"]["wheel"]["packages"])
    config = pyproject()["project"]
    declared = {re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()
                for requirement in [*config["dependencies"], *(r for extra in config["optional-dependencies"].values()
                                                               for r in extra)]}
    imported = set()
    for path in (ROOT / "scinrcodec").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name not in own}
    assert {DISTRIBUTIONS.get(name, name) for name in third_party} - declared == set()
