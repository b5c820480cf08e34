"""Every notebook in nbs/ runs clean under nbdev's test runner: one test per notebook.

Fast tests skip cells flagged `#| slow` / `#| gpu` (settings.ini tst_flags); the `slow` variant runs the
notebooks that have `#| slow` cells with those cells included. Each notebook runs in its own process.
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))
BIN = Path(sys.executable).parent


def run_nb(path: Path, flags: str = "") -> None:
    cmd = [str(BIN / "nbdev_test"), "--path", str(path), "--n_workers", "0"] + (["--flags", flags] if flags else [])
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, f"{path.name} failed:\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}"


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_notebook(nb):
    run_nb(nb)


@pytest.mark.slow
@pytest.mark.parametrize("nb", [p for p in NBS if "#| slow" in p.read_text()], ids=lambda p: p.stem)
def test_notebook_slow_cells(nb):
    run_nb(nb, flags="slow")
