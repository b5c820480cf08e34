"""The figure notebooks (nbs/figures/) run with papermill on synthetic results folders in the sweep's format.

They must write every figure and table, their CSV numbers must be the ones computed here directly from the
synthetic run files (curve.jsonl, result.json), and they must not fail when data are missing (no runs at all,
one method, one seed, no fine-tuning, no math, no evaluate runs, no train logs, no base measurements). Outputs go to a
temporary figures folder, never to figures/.
"""
import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from frpo_nb.cli import main
from frpo_nb.kernels import FIGURES_PRELOAD, preloaded_kernels
from frpo_nb.results import write_base_eval
from frpo_nb.testing import MAP_REGIMES, write_synthetic_map, write_synthetic_results
from frpo_nb.sweep import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
FIGS = ROOT / "nbs" / "figures"
NOTEBOOKS = {p.stem: p for p in sorted(FIGS.glob("*.ipynb"))}
FAST_THEORY = {"SEEDS": [0], "STEPS": 20}      # the theory figure's training, shortened
OUTPUTS = {"fig1_refusal_vs_sft": ["png", "pdf", "csv", "md"], "fig2_reward_vs_kl": ["png", "pdf", "csv", "md"],
           "fig3_lambda_sweep": ["png", "pdf", "csv", "md"], "fig4_math": ["png", "pdf", "csv", "md"],
           "fig5_robustness": ["png", "pdf", "csv", "md"], "table_degradation": ["csv", "md"], "fig6_theory": [],
           "table_diagnostics": ["csv", "md"], "fig7_paired_differences": ["png", "pdf", "csv", "md"],
           "fig8_matched_kl": ["png", "pdf", "csv", "md"], "fig9_map": ["png", "pdf", "csv", "md"]}
FILES = {**{k: k for k in OUTPUTS}, "fig6_theory": "theory_sharp_vs_flat", "table_diagnostics": "table_train_diagnostics"}
BASE = {0: {"helpfulness_reward": 0.9, "over_refusal_prob": 0.01, "refusal_greedy": 0.0, "refusal_prob": 0.45},
        1: {"helpfulness_reward": 0.8, "over_refusal_prob": 0.03, "refusal_greedy": 0.0, "refusal_prob": 0.50}}   # made up


@pytest.fixture(scope="module", autouse=True)
def kernels_from_one_interpreter():
    "The figure notebooks' kernels forked from one preloaded interpreter (frpo_nb.kernels): no kernel start-up and imports per notebook."
    with preloaded_kernels(preload=FIGURES_PRELOAD + ["frpo_nb.theory"]):   # what they import (fig6: torch)
        yield


def run_all(results: Path, figures: Path, names=None, **extra) -> None:
    "Execute the figure notebooks `names` (default all) on `results` (with parameters `extra`), writing into `figures`; raise on the first failure."
    executed = figures / "_executed"
    executed.mkdir(parents=True, exist_ok=True)
    for name in names or NOTEBOOKS:
        params = {"results_dir": str(results), "figures_dir": str(figures)} | (FAST_THEORY if name == "fig6_theory" else {}) | extra
        execute_notebook(NOTEBOOKS[name], executed / f"{name}.ipynb", params, FIGS, "python3")


def t_interval(x) -> tuple[float, float, float]:
    x = np.asarray(x, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def read_runs(results: Path) -> list[dict]:
    "Every result.json under `results`, with its curve rows (read here without frpo_nb.results)."
    out = []
    for p in sorted(results.rglob("result.json")):
        rec = json.loads(p.read_text())
        curve = p.parent / "curve.jsonl"
        rec["curve"] = [json.loads(line) for line in curve.read_text().splitlines()] if curve.exists() else []
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def safety(tmp_path_factory):
    """Two methods × two seeds × one regime, an evaluate run and a train log of every train run, the base measured at both
    seeds, every notebook executed on it."""
    tmp = tmp_path_factory.mktemp("figs")
    results, figures = tmp / "results" / "synthetic", tmp / "figures"
    write_synthetic_results(results, seeds=(0, 1), regimes=("sft-alpaca",), steps=(0, 30, 60), evaluate=True, train_log=True)
    for seed, metrics in BASE.items(): write_base_eval(results, "synthetic", "safety", seed, metrics, eval_samples=8)
    run_all(tmp / "results", figures)             # a parent of sweep folders, as `frpo-nb figures` passes
    return results, figures


NO_SWEEPS = {"fig6_theory": "draws no runs", "fig9_map": "its own parameter map_sweep"}   # notebooks without `sweeps`


def test_notebooks_are_figure_notebooks():
    "Every figure notebook has results_dir and figures_dir; each that draws runs a `sweeps` parameter it passes to its loaders."
    assert set(NOTEBOOKS) == set(OUTPUTS)
    for name, path in NOTEBOOKS.items():
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.kernelspec.name == "python3"
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and "results_dir" in params[0].source and "figures_dir" in params[0].source, path.name
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c not in params)
        if name in NO_SWEEPS: continue
        assert "\nsweeps = None" in "\n" + params[0].source, f"{name}: no sweeps parameter"
        loads = [line for line in code.splitlines() if "load_runs(" in line or "load_curves(" in line or "load_train_logs(" in line]
        assert loads and all("sweeps=" in line for line in loads), f"{name}: a loader without sweeps=: {loads}"


def test_sweeps_option_restricts_to_one_sweep(tmp_path):
    "`frpo-nb figures --sweeps a --only ...`: two sweeps in one results folder, the CSVs hold sweep a's runs only, and only the named notebooks ran."
    results = tmp_path / "results"
    write_synthetic_results(results / "a", seeds=(0, 1), sweep="a")
    write_synthetic_results(results / "b", methods=[("grpo", "grpo", None), ("frpo-lam2", "frpo", 2.0)], seeds=(5, 6, 7), sweep="b")
    only = "fig2_reward_vs_kl,table_degradation"
    for sweeps, figures in (("a", tmp_path / "fig-a"), (None, tmp_path / "fig-all")):
        rc = main(["figures", "--results", str(results), "--figures", str(figures), "--notebooks", str(FIGS), "--only", only]
                  + (["--sweeps", sweeps] if sweeps else []))
        assert rc == 0
        assert sorted(p.stem for p in figures.iterdir()) == sorted(["fig2_reward_vs_kl"] * 4 + ["table_degradation"] * 2)
    fig2, table = (pd.read_csv(tmp_path / "fig-a" / f"{n}.csv") for n in ("fig2_reward_vs_kl", "table_degradation"))
    assert set(fig2.series) == set(table.series) == {"grpo", "frpo-lam0.5"}
    assert set(table.n) == {2} and set(fig2.n) == {2}                      # sweep a's two seeds, none of b's
    every = pd.read_csv(tmp_path / "fig-all" / "table_degradation.csv")
    assert set(every.series) == {"a · grpo", "a · frpo-lam0.5", "b · grpo", "b · frpo-lam2"}      # several sweeps: named
    assert set(every[every.series.str.startswith("b")].n) == {3}
    a = [r for r in read_runs(results / "a") if r["kind"] == "finetune" and r["params"]["method_label"] == "grpo"]
    row = table[(table.series == "grpo") & (table.metric == "refusal_prob")].iloc[0]
    np.testing.assert_allclose(row.drop_mean, np.mean([r["curve"][0]["refusal_prob"] - r["curve"][-1]["refusal_prob"] for r in a]),
                               rtol=1e-9)


def test_every_file_is_written(safety):
    _, figures = safety
    for name, exts in OUTPUTS.items():
        for ext in exts: assert (figures / f"{FILES[name]}.{ext}").stat().st_size > 100, (name, ext)
    for ext in ("png", "pdf", "csv", "md"): assert (figures / f"theory_sharp_vs_flat.{ext}").is_file()
    for ext in ("csv", "md"): assert (figures / f"table_base_vs_rl.{ext}").stat().st_size > 100, ext
    assert (figures / "fig1_refusal_vs_sft.png").stat().st_size > 20_000      # a drawn figure, not a blank one


def test_degradation_table_matches_curves(safety):
    results, figures = safety
    table = pd.read_csv(figures / "table_degradation.csv")
    runs = [r for r in read_runs(results) if r["kind"] == "finetune"]
    assert len(runs) == 4 and len(table) == 2 * 5             # 2 methods × 5 safety metrics
    for label in ("grpo", "frpo-lam0.5"):
        for metric in ("refusal_greedy", "safety_reward", "helpfulness_reward"):
            drops = [r["curve"][0][metric] - r["curve"][-1][metric] for r in runs if r["params"]["method_label"] == label]
            row = table[(table.series == label) & (table.metric == metric)].iloc[0]
            assert row.n == 2 and row.last_step == 60
            np.testing.assert_allclose([row.drop_mean, row.drop_lo, row.drop_hi], t_interval(drops), rtol=1e-9)
            # the sweep's own summary (metrics.json of the fine-tuning run) agrees with the curve
            np.testing.assert_allclose(row.drop_mean, np.mean([r["metrics"][f"{metric}_drop"] for r in runs
                                                                if r["params"]["method_label"] == label]), rtol=1e-9)
    md = (figures / "table_degradation.md").read_text()
    assert "0.503" in md and "ours" in md and "| grpo |" in md


def test_fig1_points_match_curves_and_paper(safety):
    results, figures = safety
    table = pd.read_csv(figures / "fig1_refusal_vs_sft.csv")
    ours, paper = table[table.source.str.startswith("ours")], table[table.source.str.startswith("paper")]
    runs = [r for r in read_runs(results) if r["kind"] == "finetune"]
    for label in ("grpo", "frpo-lam0.5"):
        for step_i, step in enumerate((0, 30, 60)):
            vals = [r["curve"][step_i]["refusal_prob"] for r in runs if r["params"]["method_label"] == label]
            row = ours[(ours.series == label) & (ours.metric == "refusal_prob") & (ours.step == step)].iloc[0]
            np.testing.assert_allclose([row["mean"], row.lo, row.hi], t_interval(vals), rtol=1e-9)
    shipped = pd.read_csv(ROOT / "data" / "paper_figure1.csv")
    got = paper.set_index(["series", "step"])["mean"]
    for r in shipped.itertuples(): assert got[(r.method, r.step)] == r.refusal_rate
    assert len(paper) == len(shipped) == 10


def test_fig2_and_fig3_numbers(safety):
    results, figures = safety
    runs = read_runs(results)
    fig2 = pd.read_csv(figures / "fig2_reward_vs_kl.csv")
    ft = [r for r in runs if r["kind"] == "finetune" and r["params"]["method_label"] == "grpo"]
    row = fig2[(fig2.series == "grpo") & (fig2.step == 60)].iloc[0]
    np.testing.assert_allclose(row.kl_to_ref_mean, np.mean([r["curve"][-1]["kl_to_ref"] for r in ft]), rtol=1e-9)
    np.testing.assert_allclose(row.safety_reward_mean, np.mean([r["curve"][-1]["safety_reward"] for r in ft]), rtol=1e-9)
    fig3 = pd.read_csv(figures / "fig3_lambda_sweep.csv")
    train = [r for r in runs if r["kind"] == "train" and r["params"]["method"] == "frpo"]
    up = fig3[(fig3.stage == "after RL") & (fig3.metric == "helpfulness_reward") & (fig3.method == "frpo")].iloc[0]
    assert up.lamb == 0.5 and up.n == 2
    np.testing.assert_allclose(up["mean"], np.mean([r["metrics"]["helpfulness_reward"] for r in train]), rtol=1e-9)
    kept = fig3[(fig3.stage == "kept after sft-alpaca") & (fig3.metric == "refusal_greedy") & (fig3.method == "grpo")].iloc[0]
    assert math.isnan(kept.lamb)
    np.testing.assert_allclose(kept["mean"], np.mean([r["metrics"]["refusal_greedy_after"] / r["metrics"]["refusal_greedy_before"]
                                                      for r in ft]), rtol=1e-9)


def test_train_diagnostics_table_matches_logs(safety):
    results, figures = safety
    table = pd.read_csv(figures / "table_train_diagnostics.csv")
    train = [r for r in read_runs(results) if r["kind"] == "train"]
    logs = {r["run_id"]: [json.loads(line) for line in (results / r["run_id"] / "train_log.jsonl").read_text().splitlines()]
            for r in train}
    assert len(table) == 3 + 4                     # GRPO logs no ESS: 3 diagnostics; FRPO 4
    for label in ("grpo", "frpo-lam0.5"):
        for key in ("frac_reward_zero_std", "reward", "kl") + (("frpo/ess_mean",) if label != "grpo" else ()):
            per_run = [np.mean([row[key] for row in logs[r["run_id"]][-3:]]) for r in train if r["params"]["method_label"] == label]
            row = table[(table.series == label) & (table.metric == key)].iloc[0]
            assert row.n == 2 and (row.from_step, row.to_step) == (6, 10)
            np.testing.assert_allclose([row["mean"], row.lo, row.hi], t_interval(per_run), rtol=1e-9)
    assert not ((table.series == "grpo") & (table.metric == "frpo/ess_mean")).any()
    md = (figures / "table_train_diagnostics.md").read_text()
    assert "ours" in md and "| grpo |" in md and "6–10" in md


def test_base_vs_rl_table_matches_runs(safety):
    results, figures = safety
    table = pd.read_csv(figures / "table_base_vs_rl.csv")
    train = [r for r in read_runs(results) if r["kind"] == "train"]
    assert len(table) == 2 * 4 and set(table.base) == {"synthetic"}          # 2 series × the 4 safety metrics
    for label in ("grpo", "frpo-lam0.5"):
        for metric in ("helpfulness_reward", "refusal_prob"):
            runs = [r for r in train if r["params"]["method_label"] == label]
            diffs = [r["metrics"][metric] - BASE[r["seed"]][metric] for r in runs]
            row = table[(table.series == label) & (table.metric == metric)].iloc[0]
            assert row.n == 2
            np.testing.assert_allclose([row.diff_mean, row.diff_lo, row.diff_hi], t_interval(diffs), rtol=1e-9)
            np.testing.assert_allclose([row.rl_mean, row.base_mean], [np.mean([r["metrics"][metric] for r in runs]),
                                                                      np.mean([BASE[s][metric] for s in (0, 1)])], rtol=1e-9)
    md = (figures / "table_base_vs_rl.md").read_text()
    assert "ours" in md and "paired by seed" in md and "Base policy: synthetic" in md


def lost(results: Path, metric: str) -> dict:
    "{(method label, regime, seed): metric before − after} of every fine-tuning run, from its result.json."
    return {(r["params"]["method_label"], r["params"]["regime"], r["seed"]): r["metrics"][f"{metric}_before"] - r["metrics"][f"{metric}_after"]
            for r in read_runs(results) if r["kind"] == "finetune"}


def test_fig7_paired_differences_default_spec(safety):
    "No analysis spec in the records: primary = the FRPO label vs grpo on the setting's first metric; numbers = scipy's on the runs."
    results, figures = safety
    table = pd.read_csv(figures / "fig7_paired_differences.csv")
    assert len(table) == 5 and set(table.role) == {"primary", "exploratory"}      # 1 method × 5 safety metrics, no family
    row = table[table.role == "primary"].iloc[0]
    assert (row.series, row.metric, row.regime, row.reference, row.n) == ("frpo-lam0.5", "refusal_greedy", "sft-alpaca", "grpo", 2)
    d = lost(results, "refusal_greedy")
    a, b = [d[("frpo-lam0.5", "sft-alpaca", s)] for s in (0, 1)], [d[("grpo", "sft-alpaca", s)] for s in (0, 1)]
    np.testing.assert_allclose([row["mean"], row.lo, row.hi], t_interval(np.subtract(a, b)), rtol=1e-9)
    np.testing.assert_allclose([row.t, row.p_t, row.p_wilcoxon, row.p_holm],
                               [*stats.ttest_rel(a, b), stats.wilcoxon(a, b).pvalue, row.p_t], rtol=1e-9)
    assert row.p_wilcoxon == 0.5                              # two pairs of one sign: the smallest exact two-sided p
    assert table[table.role == "exploratory"].p_holm.isna().all()
    md = (figures / "fig7_paired_differences.md").read_text()
    assert "| primary |" in md and "Analysis spec: default" in md and "Power" in md


def test_fig8_matched_kl_numbers(safety):
    "Degradation where KL first reaches κ, interpolated along each run's curve.jsonl, per method and paired with grpo."
    results, figures = safety
    table = pd.read_csv(figures / "fig8_matched_kl.csv")
    assert sorted(table.kl.unique()) == [1, 2, 5, 10] and len(table) == 2 * 5 * 4      # 2 methods × 5 metrics × 4 levels
    runs = [r for r in read_runs(results) if r["kind"] == "finetune"]
    drops = {}
    for label in ("grpo", "frpo-lam0.5"):
        for r in (r for r in runs if r["params"]["method_label"] == label):
            kl, v = [c["kl_to_ref"] for c in r["curve"]], [c["refusal_prob"] for c in r["curve"]]
            drops[(label, r["seed"])] = v[0] - np.interp(10, kl, v)     # KL grows monotonically here: interp = first crossing
            if label == "grpo":                                          # KL 0, 15, 30 at steps 0, 30, 60: κ = 10 at 2/3 of the way
                np.testing.assert_allclose(drops[(label, r["seed"])], (v[0] - v[1]) * 2 / 3, rtol=1e-9)
        row = table[(table.series == label) & (table.metric == "refusal_prob") & (table.kl == 10)].iloc[0]
        assert row.n == row.n_runs == 2
        np.testing.assert_allclose([row["mean"], row.lo, row.hi], t_interval([drops[(label, s)] for s in (0, 1)]), rtol=1e-9)
    row = table[(table.series == "frpo-lam0.5") & (table.metric == "refusal_prob") & (table.kl == 10)].iloc[0]
    a, b = [drops[("frpo-lam0.5", s)] for s in (0, 1)], [drops[("grpo", s)] for s in (0, 1)]
    assert row.reference == "grpo" and row.diff_n == 2
    np.testing.assert_allclose([row.diff_mean, row.diff_lo, row.diff_hi, row.p_t], [*t_interval(np.subtract(a, b)),
                                                                                    stats.ttest_rel(a, b).pvalue], rtol=1e-9)
    assert table[table.series == "grpo"].diff_mean.isna().all()
    assert "| refusal_greedy |" in (figures / "fig8_matched_kl.md").read_text()       # the default spec's metric


SPEC = """name: synth
analysis:
  primary: {metric: refusal_prob, regime: sft-gsm8k, method: frpo-lam0.2, reference: grpo}
  secondary: [{method: frpo-lam0.5}, {metric: refusal_greedy}]
  alpha: 0.05
  test: paired-t
  kl_levels: [5, 25]
"""


def test_paired_analysis_follows_the_spec(tmp_path):
    "A config with an analysis: block named by the runs' records: its primary, its Holm family, its KL levels; fig1 draws its λ."
    (tmp_path / "study.yaml").write_text(SPEC)
    results, figures = tmp_path / "results" / "synth", tmp_path / "figures"
    write_synthetic_results(results, methods=[("grpo", "grpo", None), ("frpo-lam0.5", "frpo", 0.5), ("frpo-lam0.2", "frpo", 0.2)],
                            seeds=(0, 1, 2, 3, 4), regimes=("sft-alpaca", "sft-gsm8k"), sweep="synth",
                            config_file=tmp_path / "study.yaml")
    run_all(tmp_path / "results", figures, ["fig7_paired_differences", "fig8_matched_kl", "fig1_refusal_vs_sft"])
    table = pd.read_csv(figures / "fig7_paired_differences.csv")
    assert len(table) == 2 * 2 * 5 and table.role.tolist()[:3] == ["primary", "secondary", "secondary"]
    p = {}
    for role, label, metric in (("primary", "frpo-lam0.2", "refusal_prob"), ("secondary", "frpo-lam0.5", "refusal_prob"),
                                ("secondary", "frpo-lam0.2", "refusal_greedy")):
        row = table[(table.series == label) & (table.metric == metric) & (table.regime == "sft-gsm8k")].iloc[0]
        d = lost(results, metric)
        a, b = [d[(label, "sft-gsm8k", s)] for s in range(5)], [d[("grpo", "sft-gsm8k", s)] for s in range(5)]
        assert row.role == role and row.n == 5
        np.testing.assert_allclose([row["mean"], row.p_t, row.p_wilcoxon], [np.mean(np.subtract(a, b)), stats.ttest_rel(a, b).pvalue,
                                                                             stats.wilcoxon(a, b).pvalue], rtol=1e-9)
        p[(label, metric)] = (row.p_t, row.p_holm, row.significant)
    assert p[("frpo-lam0.2", "refusal_prob")][1] == p[("frpo-lam0.2", "refusal_prob")][0]       # the primary: its own p
    (p1, h1, _), (p2, h2, _) = sorted(v for k, v in p.items() if k != ("frpo-lam0.2", "refusal_prob"))
    np.testing.assert_allclose([h1, h2], [min(1, 2 * p1), min(1, max(2 * p1, p2))], rtol=1e-9)   # Holm, m = 2, by hand
    assert all(s == (h <= 0.05) for _, h, s in p.values())
    md = (figures / "fig7_paired_differences.md").read_text()
    assert "Analysis spec: study.yaml" in md and "| secondary |" in md
    kl = pd.read_csv(figures / "fig8_matched_kl.csv")
    assert sorted(kl.kl.unique()) == [5, 25]
    far = kl[(kl.kl == 25) & (kl.metric == "refusal_prob")]              # FRPO moves 20 nats in 60 steps, GRPO 30
    assert (far[far.method == "frpo"].n == 0).all() and (far.n_runs == 5).all() and (far[far.method == "grpo"].n == 5).all()
    assert far[far.method == "frpo"]["mean"].isna().all()
    fig1 = pd.read_csv(figures / "fig1_refusal_vs_sft.csv")
    ours = fig1[fig1.source.str.startswith("ours")]
    assert set(ours[ours.shown].series) == {"grpo", "frpo-lam0.2"} and not ours[ours.series == "frpo-lam0.5"].shown.any()
    # parameters override the spec: fig1's primary_label, fig7's analysis_file
    (tmp_path / "other.yaml").write_text("primary: {metric: refusal_greedy, regime: sft-alpaca, method: frpo-lam0.5}\n")
    run_all(tmp_path / "results", figures, ["fig1_refusal_vs_sft"], primary_label="frpo-lam0.5")
    fig1 = pd.read_csv(figures / "fig1_refusal_vs_sft.csv")
    ours = fig1[fig1.source.str.startswith("ours")]
    assert set(ours[ours.shown].series) == {"grpo", "frpo-lam0.5"}
    run_all(tmp_path / "results", figures, ["fig7_paired_differences"], analysis_file=str(tmp_path / "other.yaml"))
    row = pd.read_csv(figures / "fig7_paired_differences.csv").iloc[0]
    assert (row.role, row.series, row.metric, row.regime) == ("primary", "frpo-lam0.5", "refusal_greedy", "sft-alpaca")


def check_fig5(results: Path, figures: Path, tasks: tuple, x_task: str, drops: tuple, regime: str) -> pd.DataFrame:
    "fig5's robust values and correlations against the result.json files of the evaluate and fine-tuning runs."
    runs = read_runs(results)
    ev = {r["parent"]: r for r in runs if r["kind"] == "evaluate"}          # keyed by the train run they evaluate
    labels = sorted({r["params"]["method_label"] for r in ev.values()})
    table = pd.read_csv(figures / "fig5_robustness.csv")
    prof, corr = table[table.part == "robust value"], table[table.part == "correlation"]
    assert len(prof) == len(labels) * len(tasks) * 6 and set(prof.task) == set(tasks)
    for label in labels:
        for task in tasks:
            for eps in (0.0, 0.05, 0.1, 0.2, 0.5, 1.0):
                vals = [r["metrics"][f"{task}/robust_value@{eps:g}"] for r in ev.values() if r["params"]["method_label"] == label]
                row = prof[(prof.series == label) & (prof.task == task) & np.isclose(prof.radius, eps)]
                assert len(row) == 1 and row.n.iloc[0] == len(vals) == 2, (label, task, eps)
                np.testing.assert_allclose(row[["mean", "lo", "hi"]].iloc[0], t_interval(vals), rtol=1e-9)
    ft = [r for r in runs if r["kind"] == "finetune" and r["params"]["regime"] == regime]
    x = [ev[r["parent"]]["metrics"][f"{x_task}/robust_value@0.5"] for r in ft]      # radius = 0.5, the default
    assert len(corr) == len(drops) and set(corr.regime) == {regime}
    for m in drops:
        y = [r["metrics"][m] for r in ft]
        row = corr[corr.y_metric == m].iloc[0]
        assert row.n == len(ft) == len(ev) and row.radius == 0.5 and row.task == x_task
        np.testing.assert_allclose([row.pearson_r, row.spearman_rho], [np.corrcoef(x, y)[0, 1], stats.spearmanr(x, y)[0]], rtol=1e-9)
    md = (figures / "fig5_robustness.md").read_text()
    assert "ours" in md and "does not report this measure" in md and "not a causal claim" in md
    return table


def test_fig5_robustness_numbers(safety):
    results, figures = safety
    check_fig5(results, figures, ("safety", "normal"), "safety", ("refusal_prob_drop", "refusal_greedy_drop"), "sft-alpaca")


def test_fig5_profiles_in_train_runs(safety, tmp_path):
    "Profiles written by the train runs themselves (`robustness_samples`) give fig5 the numbers evaluate runs give."
    results = tmp_path / "results" / "synthetic"
    write_synthetic_results(results, seeds=(0, 1), regimes=("sft-alpaca",), steps=(0, 30, 60), evaluate="train")
    assert not [r for r in read_runs(results) if r["kind"] == "evaluate"]
    run_all(tmp_path / "results", tmp_path / "figures", ["fig5_robustness"])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "figures" / "fig5_robustness.csv"),
                                  pd.read_csv(safety[1] / "fig5_robustness.csv"))


def test_fig4_without_math_is_a_note(safety):
    _, figures = safety
    assert "no math results" in (figures / "fig4_math.md").read_text().lower()
    assert pd.read_csv(figures / "fig4_math.csv").n.tolist() == [0]


def test_fig4_math_numbers(tmp_path):
    results, figures = tmp_path / "math", tmp_path / "figures"
    write_synthetic_results(results, setting="math", methods=[("grpo", "grpo", None), ("frpo-lam2", "frpo", 2.0),
                                                              ("frpo-lam0.5", "frpo", 0.5)], regimes=("sft-code",), sweep="m",
                            evaluate=True)
    run_all(results, figures, ["fig4_math", "fig3_lambda_sweep", "fig5_robustness"])
    table = pd.read_csv(figures / "fig4_math.csv")
    assert table.series.tolist() == ["grpo", "frpo-lam2", "frpo-lam0.5"]          # GRPO, then λ descending
    ft = [r for r in read_runs(results) if r["kind"] == "finetune"]
    for row in table.itertuples():
        m = [r["metrics"] for r in ft if r["params"]["method_label"] == row.series]
        np.testing.assert_allclose([row.before, row.before_lo, row.before_hi], t_interval([x["math_accuracy_before"] for x in m]), rtol=1e-9)
        np.testing.assert_allclose(row.after, np.mean([x["math_accuracy_after"] for x in m]), rtol=1e-9)
        np.testing.assert_allclose(row.kept, np.mean([x["math_accuracy_after"] / x["math_accuracy_before"] for x in m]), rtol=1e-9)
    fig3 = pd.read_csv(figures / "fig3_lambda_sweep.csv")
    assert set(fig3.setting) == {"math"} and sorted(fig3.lamb.dropna().unique()) == [0.5, 2.0]
    fig5 = check_fig5(results, figures, ("math",), "math", ("math_accuracy_drop",), "sft-code")
    assert set(fig5.setting) == {"math"}


RESULTS_NOTEBOOKS = [n for n in OUTPUTS if n != "fig6_theory"]


def written_files(figures: Path) -> None:
    for name in RESULTS_NOTEBOOKS:
        for ext in OUTPUTS[name]: assert (figures / f"{FILES[name]}.{ext}").is_file(), (name, ext)
    for ext in ("csv", "md"): assert (figures / f"table_base_vs_rl.{ext}").is_file(), ext


def test_sparse_results(tmp_path):
    "GRPO only, one seed, no fine-tuning, no evaluate runs, no train log, no base measurement: every notebook runs and writes its files."
    results, figures = tmp_path / "sparse", tmp_path / "figures"
    write_synthetic_results(results, methods=[("grpo", "grpo", None)], seeds=(0,), regimes=())
    run_all(results, figures, RESULTS_NOTEBOOKS)
    written_files(figures)
    fig3 = pd.read_csv(figures / "fig3_lambda_sweep.csv")
    assert set(fig3.stage) == {"after RL"} and fig3.n.tolist() == [1, 1, 1]       # GRPO references only, no interval
    assert fig3.lo.isna().all()
    assert pd.read_csv(figures / "table_degradation.csv").empty
    assert pd.read_csv(figures / "fig5_robustness.csv").empty
    assert "no robustness profiles" in (figures / "fig5_robustness.md").read_text()
    assert pd.read_csv(figures / "table_train_diagnostics.csv").empty
    assert pd.read_csv(figures / "table_base_vs_rl.csv").empty
    assert "not measured" in (figures / "table_base_vs_rl.md").read_text()
    assert pd.read_csv(figures / "fig7_paired_differences.csv").empty and pd.read_csv(figures / "fig8_matched_kl.csv").empty
    assert "no fine-tuning runs paired with grpo" in (figures / "fig7_paired_differences.md").read_text()


@pytest.mark.slow
def test_empty_results(tmp_path):
    "A folder without any run (and one that does not exist): every notebook runs and writes its files."
    (tmp_path / "empty").mkdir()
    for results in (tmp_path / "empty", tmp_path / "missing"):
        run_all(results, tmp_path / f"figures-{results.name}", RESULTS_NOTEBOOKS)
        written_files(tmp_path / f"figures-{results.name}")
    assert "no math results" in (tmp_path / "figures-missing" / "fig4_math.md").read_text().lower()


def test_sam_grpo_is_a_method_of_its_own(tmp_path):
    """SAM-GRPO runs (ρ in their parameters, as the sweep injects it) are a series of their own, 'SAM-GRPO (ρ=…)', in the
    curves and tables, and λ-less reference rows in the λ sweep, beside GRPO and FRPO."""
    results, figures = tmp_path / "results" / "synthetic", tmp_path / "figures"
    write_synthetic_results(results, methods=[("grpo", "grpo", None), ("frpo-lam0.5", "frpo", 0.5),
                                              ("sam-grpo-rho0.05", "sam-grpo", None)], seeds=(0, 1), regimes=("sft-alpaca",))
    for path in results.rglob("result.json"):                     # the sweep gives SAM-GRPO runs their ρ
        rec = json.loads(path.read_text())
        if rec["params"]["method"] == "sam-grpo":
            rec["params"]["rho"] = 0.05
            path.write_text(json.dumps(rec))
    run_all(tmp_path / "results", figures, ["fig1_refusal_vs_sft", "fig3_lambda_sweep", "table_degradation"])
    fig1 = pd.read_csv(figures / "fig1_refusal_vs_sft.csv")
    ours = fig1[fig1.source.str.startswith("ours")]
    assert set(ours.series) == {"grpo", "frpo-lam0.5", "SAM-GRPO (ρ=0.05)"}
    runs = [r for r in read_runs(results) if r["kind"] == "finetune" and r["params"]["method"] == "sam-grpo"]
    row = ours[(ours.series == "SAM-GRPO (ρ=0.05)") & (ours.metric == "refusal_prob") & (ours.step == 60)].iloc[0]
    np.testing.assert_allclose([row["mean"], row.lo, row.hi], t_interval([r["curve"][-1]["refusal_prob"] for r in runs]),
                               rtol=1e-9)
    fig3 = pd.read_csv(figures / "fig3_lambda_sweep.csv")
    sam = fig3[fig3.method == "sam-grpo"]
    assert set(sam.series) == {"SAM-GRPO (ρ=0.05)"} and sam.lamb.isna().all() and set(sam.stage) == {
        "after RL", "kept after sft-alpaca"}
    assert "SAM-GRPO (ρ=0.05)" in (figures / "table_degradation.md").read_text()


@pytest.fixture(scope="module")
def map_study(tmp_path_factory):
    "The map study's design (write_synthetic_map: 2 reward kinds × λ 0.1, 1 × 3 regimes, seeds 2000–2002) beside another sweep; fig9 executed on it."
    tmp = tmp_path_factory.mktemp("map")
    write_synthetic_map(tmp / "results" / "tiny-safety-map")
    write_synthetic_results(tmp / "results" / "synthetic", seeds=(0, 1))          # another sweep: not on the map
    run_all(tmp / "results", tmp / "figures", ["fig9_map"])
    return tmp / "results" / "tiny-safety-map", tmp / "figures"


def map_lost(results: Path) -> dict:
    "{(label, downstream, seed): refusal_prob lost} of every fine-tuning run of the map, read here from its files: at the end from result.json, at KL 2 from curve.jsonl."
    out = {}
    for r in (r for r in read_runs(results) if r["kind"] == "finetune"):
        label, regime, seed = r["params"]["method_label"], r["params"]["regime"], r["seed"]
        out[(label, regime, seed)] = r["metrics"]["refusal_prob_before"] - r["metrics"]["refusal_prob_after"]
        if regime == "sft-gsm8k":       # KL grows with the step here: the first crossing is np.interp's
            kl, v = [c["kl_to_ref"] for c in r["curve"]], [c["refusal_prob"] for c in r["curve"]]
            out[(label, "sft-gsm8k@KL2", seed)] = v[0] - np.interp(2.0, kl, v)
    return out


def test_fig9_map_cells_and_differences(map_study):
    "Every cell reward × λ × downstream, FRPO − GRPO of the same reward kind paired by seed, as computed from the run files (synthetic: FRPO forgets less)."
    results, figures = map_study
    table = pd.read_csv(figures / "fig9_map.csv")
    assert set(table.sweep.dropna()) == {"tiny-safety-map"} and set(table.part) == {"refusal lost", "robust value", "refusal after RL", "mechanism", "kl reached"}
    lost, d = table[table.part == "refusal lost"], map_lost(results)
    downstreams = ["sft-gsm8k", "sft-gsm8k@KL2", "sft-alpaca", "sft-sameform"]
    frpo = lost[lost.comparison == "frpo − grpo"]
    assert sorted(zip(frpo.reward, frpo.lamb, frpo.downstream)) == sorted(
        (r, l, ds) for r in ("binary", "graded") for l in (0.1, 1.0) for ds in downstreams)
    for row in frpo.itertuples():
        tag = "bin" if row.reward == "binary" else "graded"
        a = [d[(f"frpo-lam{row.lamb:g}-{tag}", row.downstream, s)] for s in (2000, 2001, 2002)]
        b = [d[(f"grpo-{tag}", row.downstream, s)] for s in (2000, 2001, 2002)]
        assert row.reference == f"grpo-{tag}" and row.n == 3 and row.mean < 0            # the synthetic GRPO forgets more
        np.testing.assert_allclose([row.mean, row.lo, row.hi, row.p_t], [*t_interval(np.subtract(a, b)), stats.ttest_rel(a, b).pvalue],
                                   rtol=1e-7)
    gentle = frpo[frpo.downstream == "sft-gsm8k@KL2"]
    assert (gentle.kl_level == 2).all() and (gentle.kl_mean == 2).all() and np.allclose(gentle.step_mean, 6, atol=1e-5)
    assert (frpo[frpo.downstream == "sft-alpaca"].kl_mean == 20).all() and (frpo[frpo.downstream == "sft-alpaca"].ref_kl_mean == 30).all()
    md = (figures / "fig9_map.md").read_text()
    assert "uncorrected" in md and "ours" in md and "seeds 2000–2002" in md and "| frpo-lam0.1-graded − grpo-graded |" in md


def test_fig9_map_control_and_reference_rows(map_study):
    "FRPO − control only where the control ran (graded: every λ; binary: the smallest), SAM-GRPO − GRPO per reward kind and downstream; the robust value and mechanism per (reward, λ); the KL reached."
    results, figures = map_study
    table = pd.read_csv(figures / "fig9_map.csv")
    lost, d = table[table.part == "refusal lost"], map_lost(results)
    control = lost[lost.comparison == "frpo − grpo-factor"]
    assert sorted(set(zip(control.reward, control.lamb))) == [("binary", 0.1), ("graded", 0.1), ("graded", 1.0)]
    row = control[(control.reward == "graded") & (control.lamb == 1.0) & (control.downstream == "sft-sameform")].iloc[0]
    assert row.reference == "grpo-factor-lam1-graded"
    np.testing.assert_allclose(row["mean"], np.mean([d[("frpo-lam1-graded", "sft-sameform", s)] - d[("grpo-factor-lam1-graded", "sft-sameform", s)]
                                                  for s in (2000, 2001, 2002)]), rtol=1e-9)
    sam = lost[lost.comparison == "sam-grpo − grpo"]
    assert len(sam) == 2 * 4 and set(sam.series) == {"sam-grpo-bin", "sam-grpo-graded"}
    train = {(r["params"]["method_label"], r["seed"]): r["metrics"] for r in read_runs(results) if r["kind"] == "train"}
    robust = table[(table.part == "robust value") & (table.comparison == "frpo − grpo")]
    assert len(robust) == 4 and set(robust.metric) == {"safety/robust_value@0.5"}
    row = robust[(robust.reward == "binary") & (robust.lamb == 0.1)].iloc[0]
    np.testing.assert_allclose([row["mean"], row.lo, row.hi], t_interval(
        [train[("frpo-lam0.1-bin", s)]["safety/robust_value@0.5"] - train[("grpo-bin", s)]["safety/robust_value@0.5"] for s in (2000, 2001, 2002)]), rtol=1e-9)
    after = table[(table.part == "refusal after RL") & (table.comparison == "frpo − grpo")]     # what there was to lose
    assert len(after) == 4 and set(after.metric) == {"refusal_prob"}
    row = after[(after.reward == "graded") & (after.lamb == 1.0)].iloc[0]
    np.testing.assert_allclose([row["mean"], row.lo, row.hi], t_interval(
        [train[("frpo-lam1-graded", s)]["refusal_prob"] - train[("grpo-graded", s)]["refusal_prob"] for s in (2000, 2001, 2002)]), rtol=1e-9)
    mech = table[(table.part == "mechanism") & (table.series == "frpo-lam1-graded")].set_index("metric")
    assert set(mech.index) == {"two_valued_frac", "ess_mean", "step_factor_mean"}
    runs = [r for r in read_runs(results) if r["kind"] == "train" and r["params"]["method_label"] == "frpo-lam1-graded"]
    logs = [[json.loads(line) for line in (results / r["run_id"] / "train_log.jsonl").read_text().splitlines()] for r in runs]
    np.testing.assert_allclose(mech.loc["two_valued_frac", "mean"], np.mean([np.mean([x["frpo/two_valued_frac"] for x in log]) for log in logs]), rtol=1e-9)
    kl = table[table.part == "kl reached"].set_index(["reward", "downstream"])
    assert kl.loc[("graded", "sft-gsm8k"), "n"] == 6 * 3 and np.isclose(kl.loc[("graded", "sft-gsm8k"), "mean"], (30 + 5 * 20) / 6)
    assert kl.loc[("binary", "sft-gsm8k@KL2"), "mean"] == 2
    assert sorted(MAP_REGIMES) == sorted(set(table.regime.dropna()))


def test_fig9_without_the_map_is_a_note(safety):
    "A results folder without runs of the map sweep: a note figure and a placeholder table."
    _, figures = safety
    table = pd.read_csv(figures / "fig9_map.csv")
    assert table.part.tolist() == ["none"] and table.n.tolist() == [0]
    assert "no runs of sweep tiny-safety-map" in table.note.iloc[0]
    assert "placeholder" in (figures / "fig9_map.md").read_text()
