"""Every run record says which code, configuration and environment made it (issue 26), end to end.

A sweep from a config outside the checkout records the checkout's commit; a sweep from a dirty copy of the code
records dirty + the hash of its diff; runs from two commits make `status --provenance` show two groups; an
installed wheel records its build stamp; a pre-registered paired analysis refuses runs from two commits unless
its config allows it, and then names both.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from papermill.exceptions import PapermillExecutionError

import frpo_nb
from frpo_nb.kernels import FIGURES_PRELOAD, preloaded_kernels
from frpo_nb.provenance import FREEZE, checkout_state
from frpo_nb.sweep import execute_notebook
from frpo_nb.testing import SYNTHETIC_COMMITS, wheel_venv, write_smoke_config, write_synthetic_results

ROOT = Path(__file__).resolve().parents[1]
CODE = Path(frpo_nb.__file__).resolve().parent          # the package these tests import (and the sweeps run)
FIG7 = ROOT / "nbs" / "figures" / "fig7_paired_differences.ipynb"


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def sweep(python, cfg: Path, *args, pythonpath=None) -> subprocess.CompletedProcess:
    "`python -m frpo_nb.cli sweep CFG` with frpo_nb imported from `pythonpath` (None: no PYTHONPATH at all)."
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | ({"PYTHONPATH": str(pythonpath)} if pythonpath else {})
    return subprocess.run([str(python), "-m", "frpo_nb.cli", *(args or ("sweep", str(cfg), "--no-progress"))], env=env,
                          capture_output=True, text=True, timeout=600, cwd=cfg.parent)


def records(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(results.glob("*/result.json"))}


def small_config(tmp: Path, name: str = "prov") -> Path:
    "One train run and its fine-tuning run on the smoke templates, in `tmp` (outside any repository)."
    return write_smoke_config(tmp, name, methods=[{"name": "grpo", "beta": 0.1}], results_dir="results")


def test_config_outside_the_checkout_records_the_code_commit(tmp_path):
    assert checkout_state(tmp_path) is None and checkout_state(CODE.parent) is not None   # a config outside git
    cfg = small_config(tmp_path)
    res = sweep(sys.executable, cfg, pythonpath=os.environ.get("PYTHONPATH"))
    assert res.returncode == 0, res.stdout + res.stderr
    recs = records(tmp_path / "results")
    assert len(recs) == 2
    head = git(CODE.parent, "rev-parse", "HEAD")
    for rid, r in recs.items():
        p = r["provenance"]
        assert r["git"]["commit"] == head and p["code"]["commit"] == head and p["code"]["source"] == "checkout", rid
        assert p["code_id"].startswith(head[:12])
        assert p["config"]["repo"] == {"commit": None, "dirty": None}           # what `git` held before: nothing
        assert p["config"]["sha256"] == hashlib.sha256(cfg.read_bytes()).hexdigest()
        tpl = tmp_path / "tpl" / p["template"]["file"]
        assert p["template"]["sha256"] == hashlib.sha256(tpl.read_bytes()).hexdigest()
        freeze = tmp_path / "results" / rid / FREEZE
        assert p["environment"]["freeze_sha256"] == hashlib.sha256(freeze.read_bytes()).hexdigest()
        assert f"pyyaml=={yaml.__version__}" in freeze.read_text().splitlines()
        assert {"python", "torch", "papermill", "frpo_nb"} <= set(r["versions"])


@pytest.fixture
def code_repo(tmp_path) -> Path:
    "A git repository holding a copy of the package under test, committed (commit A)."
    repo = tmp_path / "code"
    shutil.copytree(CODE, repo / "frpo_nb", ignore=shutil.ignore_patterns("__pycache__", "_build.json"))
    (repo / ".gitignore").write_text("__pycache__/\n")
    for args in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"], ["add", "-A"],
                 ["commit", "-qm", "A"]):
        git(repo, *args)
    return repo


def test_dirty_tree_and_two_commits(tmp_path, code_repo):
    cfg = small_config(tmp_path / "work")
    with open(code_repo / "frpo_nb" / "tiny.py", "a") as f: f.write("# an uncommitted change\n")
    expected = hashlib.sha256(subprocess.run(["git", "-C", str(code_repo), "diff", "--binary", "--no-color", "HEAD"],
                                             capture_output=True, check=True).stdout).hexdigest()
    res = sweep(sys.executable, cfg, pythonpath=code_repo)
    assert res.returncode == 0, res.stdout + res.stderr
    commit_a = git(code_repo, "rev-parse", "HEAD")
    for r in records(tmp_path / "work" / "results").values():
        code = r["provenance"]["code"]
        assert (code["source"], code["commit"], code["dirty"]) == ("checkout", commit_a, True)
        assert code["diff_sha256"] == expected and code["changed"] == ["frpo_nb/tiny.py"]
        assert r["provenance"]["code_id"] == f"{commit_a[:12]}+dirty.{expected[:8]}" and r["git"]["dirty"] is True

    # commit the change (commit B) and run the fine-tuning run again: the sweep's runs now come from two commits
    git(code_repo, "commit", "-qam", "B")
    commit_b = git(code_repo, "rev-parse", "HEAD")
    ft = next(rid for rid, r in records(tmp_path / "work" / "results").items() if r["kind"] == "finetune")
    shutil.rmtree(tmp_path / "work" / "results" / ft)
    res = sweep(sys.executable, cfg, pythonpath=code_repo)
    assert res.returncode == 0, res.stdout + res.stderr
    new = records(tmp_path / "work" / "results")[ft]["provenance"]
    assert (new["code"]["commit"], new["code"]["dirty"], new["code_id"]) == (commit_b, False, commit_b[:12])
    st = sweep(sys.executable, cfg, "status", str(cfg), "--provenance", pythonpath=code_repo)
    assert st.returncode == 0, st.stderr
    out = st.stdout
    assert "code (commit + uncommitted diff): 2 groups" in out, out
    assert f"commit {commit_a[:12]} → {commit_b[:12]}" in out and "[1] uncommitted: frpo_nb/tiny.py" in out, out
    assert "environment (python + package freeze): 1 group" in out, out


def test_installed_wheel_records_its_build_stamp(tmp_path):
    at_build = checkout_state(ROOT)                      # the tree the wheel is built from, as the stamp must say
    py, site = wheel_venv(ROOT, tmp_path)
    stamp = json.loads((site / "frpo_nb" / "_build.json").read_text())
    assert {k: stamp[k] for k in ("commit", "dirty", "diff_sha256")} == {k: at_build[k] for k in ("commit", "dirty", "diff_sha256")}
    cfg = small_config(tmp_path / "work")
    res = sweep(py, cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    recs = records(tmp_path / "work" / "results")
    assert len(recs) == 2
    for r in recs.values():
        code = r["provenance"]["code"]
        assert code["source"] == "wheel" and code["built"] == stamp["built"], code
        assert (code["commit"], code["dirty"], code["diff_sha256"]) == (at_build["commit"], at_build["dirty"], at_build["diff_sha256"])
        assert r["git"] == {"commit": at_build["commit"], "dirty": at_build["dirty"]}


@pytest.fixture(scope="module")
def figure_kernels():
    "The figure notebooks' kernels forked from one interpreter that imported what they import (frpo_nb.kernels)."
    with preloaded_kernels(preload=FIGURES_PRELOAD):
        yield


ANALYSIS = {"primary": {"metric": "refusal_prob", "regime": "sft-alpaca", "method": "frpo-lam0.5", "reference": "grpo"}}


def run_fig7(tmp: Path, analysis: dict) -> Path:
    "The paired-differences figure on synthetic runs of two commits (GRPO on one, FRPO on the other) under `analysis`."
    cfg = tmp / "study.yaml"
    tmp.mkdir(parents=True)
    cfg.write_text(yaml.safe_dump({"name": "synthetic", "analysis": analysis}))
    write_synthetic_results(tmp / "results" / "synthetic", seeds=(0, 1, 2), commits=SYNTHETIC_COMMITS, config_file=cfg)
    figures = tmp / "figures"
    execute_notebook(FIG7, tmp / "fig7.ipynb", {"results_dir": str(tmp / "results"), "figures_dir": str(figures)},
                     FIG7.parent, "python3")
    return figures


def test_paired_analysis_refuses_mixed_code_unless_allowed(tmp_path, figure_kernels):
    with pytest.raises(PapermillExecutionError) as e: run_fig7(tmp_path / "refused", ANALYSIS)
    assert "pre-registered analysis would combine runs made by 2 code versions" in e.value.evalue
    assert all(c[:12] in e.value.evalue for c in SYNTHETIC_COMMITS)
    assert not (tmp_path / "refused" / "figures" / "fig7_paired_differences.csv").exists()

    reason = "the second commit changed only the plots"
    figures = run_fig7(tmp_path / "allowed", ANALYSIS | {"allow_mixed_code": True, "reason": reason})
    caption = (figures / "fig7_paired_differences.md").read_text()
    assert "Mixed code (allowed by " in caption and reason in caption, caption
    assert all(c[:12] in caption for c in SYNTHETIC_COMMITS), caption
    per_run = (figures / "fig7_paired_differences.provenance.csv").read_text()
    assert all(c[:12] in per_run for c in SYNTHETIC_COMMITS) and per_run.count("\n") == 1 + 6


@pytest.mark.parametrize("name,table", [("fig3_lambda_sweep", "fig3_lambda_sweep"),            # load_runs
                                        ("table_degradation", "table_degradation"),            # load_curves
                                        ("table_diagnostics", "table_train_diagnostics")])     # load_train_logs
def test_figures_say_when_runs_mix_code(tmp_path, name, table, figure_kernels):
    "Without a pre-registered spec nothing refuses, but each table's caption and per-run list name both commits."
    nb = ROOT / "nbs" / "figures" / f"{name}.ipynb"
    for sub, commits in (("one", SYNTHETIC_COMMITS[:1]), ("two", SYNTHETIC_COMMITS)):
        write_synthetic_results(tmp_path / sub / "results" / "synthetic", seeds=(0, 1), commits=commits, train_log=True)
        execute_notebook(nb, tmp_path / sub / f"{name}.ipynb", {"results_dir": str(tmp_path / sub / "results"),
                                                                 "figures_dir": str(tmp_path / sub / "figures")}, nb.parent, "python3")
    one, two = ((tmp_path / s / "figures" / f"{table}.md").read_text() for s in ("one", "two"))
    assert "Mixed provenance" not in one and not (tmp_path / "one" / "figures" / f"{table}.provenance.csv").exists()
    assert "Mixed provenance: these runs were made by 2 code versions" in two and all(c[:12] in two for c in SYNTHETIC_COMMITS)
    assert two.startswith(one.split("\n\n")[0])                       # the caption is kept, the note added
    assert (tmp_path / "two" / "figures" / f"{table}.provenance.csv").is_file()
