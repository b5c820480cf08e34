"""Every notebook in nbs/ runs clean, and its committed outputs are current: one test per notebook, ONE execution.

tools/notebooks.py runs the notebook as nbdev_test does (execnb, cwd nbs/, cells flagged `#| slow` / `#| gpu` /
`#| notest` / `#| eval: false` skipped: settings.ini tst_flags); a failing cell fails the test, and the text the
cells print now (stdout, text/* results) must equal the committed outputs (`make notebooks` writes them), so a
notebook whose prose refers to a result shows that result. Images are not compared (see tools/notebooks.py).
The `slow` variant runs the notebooks that have `#| slow` cells with those cells included (no comparison).
Each notebook runs in its own process.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))
FIGURES = sorted((ROOT / "nbs" / "figures").glob("*.ipynb"))
TEMPLATES = sorted((ROOT / "nbs" / "experiments").glob("*.ipynb"))


def run_nb(path: Path, flags: str = "") -> None:
    cmd = [sys.executable, str(ROOT / "tools" / "notebooks.py"), "check", "--one", str(path), "--flags", flags]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, f"{path.name} failed:\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}"


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_notebook(nb):
    run_nb(nb)


@pytest.mark.slow
@pytest.mark.parametrize("nb", [p for p in NBS if "#| slow" in p.read_text()], ids=lambda p: p.stem)
def test_notebook_slow_cells(nb):
    run_nb(nb, flags="slow")


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
