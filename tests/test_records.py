"""Run records (frpo_nb.records): the figures and tables built from a study's committed records equal, byte for byte,
those built from the results folder they were exported from; and the records of a real (smoke) sweep restore to the
same runs, curves and parameters as the loaders read from the sweep itself."""
import filecmp
from pathlib import Path

import pandas as pd
import pytest

from frpo_nb.cli import main
from frpo_nb.core import load_config
from frpo_nb.kernels import FIGURES_PRELOAD, preloaded_kernels
from frpo_nb.records import export_records, read_records, restore_records
from frpo_nb.results import load_base_evals, load_curves, load_runs, load_train_logs, write_base_eval
from frpo_nb.sweep import execute_notebook, run_sweep
from frpo_nb.testing import write_smoke_config, write_synthetic_results

ROOT = Path(__file__).resolve().parents[1]
FIGS = ROOT / "nbs" / "figures"
FROM_RUNS = [p for p in sorted(FIGS.glob("*.ipynb")) if p.stem != "fig6_theory"]   # fig6 draws no runs
THEORY = "theory_sharp_vs_flat."                                                      # what fig6 writes


@pytest.fixture(scope="module", autouse=True)
def kernels_from_one_interpreter():
    "The notebooks' kernels forked from one preloaded interpreter (frpo_nb.kernels), as in tests/test_figures.py."
    with preloaded_kernels(preload=FIGURES_PRELOAD + ["frpo_nb.theory"]):   # what they import (fig6: torch)
        yield


def _figures(results: Path, figures: Path) -> list[Path]:
    "Execute every figure notebook that reads runs on `results`, writing into `figures`; the files written."
    executed = figures.parent / f"_executed-{figures.name}"
    executed.mkdir(parents=True, exist_ok=True)
    for nb in FROM_RUNS:
        execute_notebook(nb, executed / nb.name, {"results_dir": str(results), "figures_dir": str(figures)}, FIGS, "python3")
    return sorted(p for p in figures.iterdir() if p.is_file())


def test_figures_from_records_equal_figures_from_results(tmp_path):
    results = tmp_path / "a" / "results"
    write_synthetic_results(results / "synthetic", seeds=(0, 1, 2), regimes=("sft-alpaca",), steps=(0, 30, 60),
                            evaluate="train", train_log=True)
    for seed in (0, 1, 2):
        write_base_eval(results / "synthetic", "synthetic", "safety", seed, {"refusal_prob": 0.4 + 0.05 * seed,
                        "helpfulness_reward": 0.8, "over_refusal_prob": 0.02, "refusal_greedy": 0.0}, eval_samples=8)
    written = export_records(results, tmp_path / "records")
    assert [p.name for p in written] == ["synthetic.jsonl.gz"]
    own = _figures(results, tmp_path / "a" / "figures")
    assert len(own) >= 20 and {p.suffix for p in own} >= {".png", ".pdf", ".csv", ".md"}
    # the figures from the records, drawn by the command line: an empty results folder with --records restores the
    # records (restore_records) and executes every figure notebook on them. One execution checks both the restored
    # runs and the command: the same files as from the results (and fig6's, which draws no runs), byte for byte.
    rc = main(["figures", "--results", str(tmp_path / "empty"), "--records", str(tmp_path / "records"),
               "--figures", str(tmp_path / "c"), "--notebooks", str(FIGS)])
    assert rc == 0
    back = sorted(p for p in (tmp_path / "c").iterdir() if p.is_file() and not p.name.startswith(THEORY))
    assert [p.name for p in own] == [p.name for p in back]
    different = [p.name for p, q in zip(own, back) if not filecmp.cmp(p, q, shallow=False)]
    assert not different, different
    theory = {p.name for p in (tmp_path / "c").iterdir()} - {p.name for p in back}
    assert theory == {THEORY + ext for ext in ("png", "pdf", "csv", "md")}, theory


def test_records_of_a_real_sweep(tmp_path):
    cfg = load_config(write_smoke_config(tmp_path, "micro"))
    summary = run_sweep(cfg, workers=1, progress=False)
    assert summary.ok
    results = cfg.results_path
    written = export_records(results, tmp_path / "records")
    lines = read_records(written[0])
    assert {Path(line["path"]).name for line in lines} == {"result.json", "curve.jsonl"}
    assert str(tmp_path) not in written[0].read_bytes().decode("latin-1")   # gzip: compressed, but no stored path either
    assert str(tmp_path) not in str(lines)                                     # no path of the exporting machine
    back = restore_records(tmp_path / "records", tmp_path / "restored")
    for load in (load_runs, load_curves):
        a, b = (load(r).drop(columns="run_dir") for r in (results, back))
        assert len(a) > 0
        pd.testing.assert_frame_equal(a, b)
    assert load_train_logs(back).empty and load_base_evals(back).empty        # the smoke runs write neither
