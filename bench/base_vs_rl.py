"""The RL policies of a tiny study against their base, seed by seed: is the base's helpfulness (or any metric) kept?

    .venv/bin/python bench/base_vs_rl.py results/tiny-safety [--metrics helpfulness_reward refusal_prob ...]

The base is evaluated exactly as the train template evaluates an RL policy (`evaluate_policy` on all held-out prompts,
the runs' `eval_samples`, the run's seed), once per seed of the study, so each run is paired with the base measured
under the same sampling seed. Prints, per method, the mean after RL, the base's mean over the same seeds, and the
mean paired difference (run − base), each with a 95 % t-interval over seeds. Ours, tiny scale.
"""
import argparse
from pathlib import Path

import torch

from frpo_nb.evaluate import evaluate_policy
from frpo_nb.results import add_series, fmt_ci, load_runs, mean_ci
from frpo_nb.sweep import template_parameters
from frpo_nb.tiny import load_tiny

DEFAULT_METRICS = {"safety": ["helpfulness_reward", "over_refusal_prob", "refusal_greedy", "refusal_prob"],
                   "math": ["math_accuracy", "math_stated_accuracy"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results", help="a sweep's results folder (e.g. results/tiny-safety)")
    p.add_argument("--metrics", nargs="+", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    runs = add_series(load_runs(a.results, kind="train"))
    if runs.empty: raise SystemExit(f"no finished train runs under {a.results}")
    default = template_parameters(Path(__file__).parents[1] / "nbs/experiments/train.ipynb")["eval_samples"]
    (setting,) = runs.setting.unique()
    (samples,) = runs["eval_samples"].fillna(default).unique() if "eval_samples" in runs else (default,)
    bases = {Path(b).name for b in runs.base}
    if len(bases) != 1: raise SystemExit(f"the runs have {len(bases)} bases ({sorted(bases)}); compare one at a time")
    base_dir = Path(a.results) / "_bases" / bases.pop()
    model, tok = load_tiny(base_dir)
    seeds = sorted(int(s) for s in runs.seed.unique())
    base = {s: evaluate_policy(model, tok, setting, n_samples=int(samples), seed=s) for s in seeds}
    print(f"{a.results}: {len(runs)} train runs, base {base_dir.name}, seeds {seeds}, {int(samples)} samples per prompt\n")
    for metric in a.metrics or DEFAULT_METRICS[setting]:
        print(f"{metric}: base {fmt_ci(*mean_ci([base[s][metric] for s in seeds])[:3])}")
        print("| method | after RL | run − base (paired by seed) |\n|---|---|---|")
        for series, g in runs.groupby("series", sort=False):
            diff = [v - base[int(s)][metric] for v, s in zip(g[metric], g["seed"])]
            print(f"| {series} | {fmt_ci(*mean_ci(g[metric])[:3])} | {fmt_ci(*mean_ci(diff)[:3])} |")
        print()


if __name__ == "__main__":
    main()
