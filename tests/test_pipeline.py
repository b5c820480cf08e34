"""End to end: a micro config through the real templates with papermill (`frpo-nb sweep`), then the figures.

The micro model and a handful of steps keep this to a minute or two on 2 cores; the numbers mean
nothing, the plumbing is what is tested: every stage runs, writes its files, and the figure notebooks
read them. The safety sweep is run once (`micro_safety`, a module fixture: under `make test` the file stays on one
worker) and read by both tests that need it.
"""
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "frpo-nb"

MICRO = """
name: micro
setting: {setting}
models: [micro]
methods:
  - {{name: grpo, beta: 0.1, scale_rewards: group, label: grpo}}
  - {{name: frpo, lamb: 0.5, beta: 0.002}}
seeds: [0]
regimes: [{regime}]
train: {{warmup_steps: 4, max_steps: 2, per_device_train_batch_size: 8, num_generations: 4,
         max_completion_length: 8, eval_prompts: 2, eval_samples: 2, robustness_samples: 2}}
finetune: {{max_steps: 2, every: 1, batch_size: 4, eval_prompts: 2, eval_samples: 2}}
evaluate: {{n_samples: 2, eval_prompts: 2}}
evaluate_after: [finetune]
templates: {{train: {root}/nbs/experiments/train.ipynb, finetune: {root}/nbs/experiments/finetune.ipynb,
            evaluate: {root}/nbs/experiments/evaluate.ipynb}}
results_dir: {results}
"""


def run_micro(tmp_path, setting, regime):
    results = tmp_path / "results"
    cfg = tmp_path / f"micro-{setting}.yaml"
    cfg.write_text(MICRO.format(setting=setting, regime=regime, root=ROOT, results=results))
    res = subprocess.run([str(CLI), "sweep", str(cfg), "--workers", "2", "--no-progress"], capture_output=True,
                         text=True, timeout=900, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return results


def tree_digest(folder: Path) -> dict[str, str]:
    "SHA-256 of every file below `folder`, by relative path."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def micro_safety(tmp_path_factory):
    """The safety micro sweep (regime sft-alpaca), run once for the tests that read it; with the digest of the committed
    figures/ from before it ran."""
    committed = tree_digest(ROOT / "figures")
    return run_micro(tmp_path_factory.mktemp("micro-safety"), "safety", "sft-alpaca"), committed


@pytest.mark.parametrize("setting,regime", [("safety", "sft-alpaca"), ("math", "sft-code")])
def test_micro_sweep_every_stage(request, tmp_path, setting, regime):
    results = request.getfixturevalue("micro_safety")[0] if setting == "safety" else run_micro(tmp_path, setting, regime)
    runs = {p.parent.name: json.loads(p.read_text()) for p in results.glob("*/result.json")}
    kinds = sorted(r["kind"] for r in runs.values())
    assert kinds == ["evaluate"] * 2 + ["finetune"] * 2 + ["train"] * 2, kinds
    for run_id, r in runs.items():
        assert r["status"] == "done" and r["params"]["setting"] == setting
        folder = results / run_id
        if r["kind"] == "train":
            assert (folder / "policy" / "model.safetensors").is_file() and (folder / "train_log.jsonl").is_file()
            key = "refusal_greedy" if setting == "safety" else "math_accuracy"
            assert 0 <= r["metrics"][key] <= 1 and r["metrics"]["effective_config"]["loss_type"] in ("grpo", "frpo")
            task = "safety" if setting == "safety" else "math"     # the robustness profile, computed in the train run
            assert r["metrics"][f"{task}/robust_value@0.5"] <= r["metrics"][f"{task}/robust_value@0"] + 1e-9
        if r["kind"] == "finetune":
            curve = [json.loads(line) for line in (folder / "curve.jsonl").read_text().splitlines()]
            assert [row["step"] for row in curve] == [0, 1, 2]
            assert r["metrics"]["steps"] == 2
        if r["kind"] == "evaluate":
            assert any(k.endswith("robust_value@0.1") for k in r["metrics"])


def test_micro_sweep_then_figures_match_results(tmp_path, micro_safety):
    "The figure notebooks run on the micro sweep's results and their tables hold the runs' numbers."
    results, committed = micro_safety
    # without --figures the figures go next to the results; with --figures where it says; the two runs from the same
    # results write the same bytes
    res = subprocess.run([str(CLI), "figures", "--results", str(results)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    first = tree_digest(results / "figures")
    assert any(name.endswith(".csv") for name in first) and any(name.endswith(".png") for name in first)
    res = subprocess.run([str(CLI), "figures", "--results", str(tmp_path / "missing")], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert res.returncode != 0 and "does not exist" in res.stderr and "run a sweep first" in res.stderr, res.stderr
    figures = tmp_path / "figures"
    res = subprocess.run([str(CLI), "figures", "--results", str(results), "--figures", str(figures)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert tree_digest(figures) == first                         # deterministic, and --figures writes the same set
    assert tree_digest(ROOT / "figures") == committed            # nothing of the committed figures was touched
    for name in ("fig1_refusal_vs_sft", "fig2_reward_vs_kl", "fig3_lambda_sweep", "table_degradation"):
        assert (figures / f"{name}.csv").is_file(), name
    for name in ("fig1_refusal_vs_sft", "fig2_reward_vs_kl", "fig3_lambda_sweep"):
        assert (figures / f"{name}.png").stat().st_size > 0 and (figures / f"{name}.pdf").is_file()
    table = {(r["method"], r["metric"]): r for r in csv.DictReader(open(figures / "table_degradation.csv"))}
    for p in results.glob("*/result.json"):
        r = json.loads(p.read_text())
        if r["kind"] != "finetune": continue
        row = table[(r["params"]["method"], "refusal_greedy")]
        assert abs(float(row["drop_mean"]) - r["metrics"]["refusal_greedy_drop"]) < 1e-9
