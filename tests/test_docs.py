"""The documentation site builds with ``mkdocs build --strict``: every page, every API entry
(mkdocstrings renders the docstrings) and every snippet of an example script must resolve."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(pathlib.Path(sys.executable).parent / "mkdocs")
    if not pathlib.Path(mkdocs).exists():
        pytest.fail("mkdocs is not installed: pip install -e '.[dev]'")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("getting-started", "how-it-works", "user-guide", "examples", "benchmarks", "api"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page
