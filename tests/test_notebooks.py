"""Every notebook in nbs/ runs clean, and its committed outputs are current: one test per notebook, ONE execution.

tools/notebooks.py runs the notebook as nbdev_test does (execnb, cwd nbs/, cells flagged `#| slow` / `#| gpu` /
`#| notest` / `#| eval: false` skipped: settings.ini tst_flags); a failing cell fails the test, and the text the
cells print now (stdout, text/* results) must equal the committed outputs (`make notebooks` writes them), so a
notebook whose prose refers to a result shows that result. Images are not compared (see tools/notebooks.py).
The `slow` variant runs the notebooks that have `#| slow` cells with those cells included (no comparison).

Each notebook runs in its own process, forked from an interpreter that has already imported the stack the notebooks
import (multiprocessing's forkserver, one per test process, its modules `PRELOAD`; the environment tools/notebooks.py
gives a check, `check_env()`, is set before those imports): ≈ 7 s of imports per notebook on the CI machine, paid once.
Nothing has run in that interpreter but imports, so each check starts as a fresh one would. `FRPO_NB_CHECK_FORK=0`
runs each check as `python tools/notebooks.py check --one NB` instead.
"""
import json
import multiprocessing
import multiprocessing.forkserver
import os
import subprocess
import sys
from pathlib import Path

import pytest

from frpo_nb import kernels

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))
FIGURES = sorted((ROOT / "nbs" / "figures").glob("*.ipynb"))
TEMPLATES = sorted((ROOT / "nbs" / "experiments").glob("*.ipynb"))
# what the notebooks import: the checker's own modules, what run templates and figure notebooks import, the sweep
PRELOAD = ["notebooks", "execnb.shell", "nbdev.clean", "nbdev.config", "fastcore.test",
           *dict.fromkeys(kernels.PRELOAD + kernels.FIGURES_PRELOAD), "frpo_nb.sweep"]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks  # noqa: E402  (tools/notebooks.py: its check_forked is what the forked processes run)


@pytest.fixture(scope="module")
def forkserver():
    "multiprocessing's forkserver for this test process, started in a check's environment with `PRELOAD` imported; None: no fork."
    if os.environ.get("FRPO_NB_CHECK_FORK", "1") == "0" or "forkserver" not in multiprocessing.get_all_start_methods():
        yield None; return
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    with pytest.MonkeyPatch.context() as mp:                 # the server inherits a check's environment; the tests keep theirs
        for k, v in notebooks.check_env().items(): mp.setenv(k, v)
        multiprocessing.forkserver.ensure_running()
    yield ctx


def run_nb(path: Path, flags: str, ctx, tmp: Path) -> None:
    if ctx is None:
        cmd = [sys.executable, str(ROOT / "tools" / "notebooks.py"), "check", "--one", str(path), "--flags", flags]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        assert res.returncode == 0, f"{path.name} failed:\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}"
        return
    log = tmp / "check.log"
    proc = ctx.Process(target=notebooks.check_forked, args=(str(path), flags, str(log)))
    proc.start(); proc.join(1800)
    if proc.is_alive(): proc.kill(); proc.join()
    out = log.read_text(errors="replace") if log.is_file() else ""
    assert proc.exitcode == 0, f"{path.name} failed (exit status {proc.exitcode}):\n{out[-12000:]}"


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_notebook(nb, forkserver, tmp_path):
    run_nb(nb, "", forkserver, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("nb", [p for p in NBS if "#| slow" in p.read_text()], ids=lambda p: p.stem)
def test_notebook_slow_cells(nb, forkserver, tmp_path):
    run_nb(nb, "slow", forkserver, tmp_path)


@pytest.mark.parametrize("nb", TEMPLATES, ids=lambda p: p.stem)
def test_templates_have_no_outputs(nb):
    "The papermill templates are run per experiment; their committed copies stay output-free."
    cells = json.loads(nb.read_text())["cells"]
    assert not [i for i, c in enumerate(cells) if c.get("outputs")], f"{nb.name} has outputs: nbdev_clean --clear_all"


@pytest.mark.parametrize("nb", FIGURES, ids=lambda p: p.stem)
def test_figure_notebooks_written_back_cleanly(nb):
    "A figure notebook is output-free (no results yet) or holds what `make figures` wrote back: all its cells ran."
    raw = nb.read_text()
    cells = [c for c in json.loads(raw)["cells"] if c["cell_type"] == "code"]
    ran = [bool(c.get("outputs")) for c in cells]
    if not any(ran): pytest.skip(f"{nb.name}: no outputs yet (make figures writes them from the study's results)")
    assert "injected-parameters" not in raw and '"papermill"' not in raw, f"{nb.name}: papermill's cell or metadata kept"
    assert str(ROOT) not in raw, f"{nb.name}: an absolute path of this checkout in the outputs"
    assert not any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", [])), f"{nb.name}: an error kept"
