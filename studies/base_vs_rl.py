"""Measure the base policy of a tiny study's RL runs at each of their seeds, as the train template measures an RL policy.

    .venv/bin/python studies/base_vs_rl.py results/tiny-safety [results/tiny-math ...] [--force]

For every sweep folder under each RESULTS (a sweep's folder or a parent of several) and every base policy its finished
train runs started from: the base is evaluated exactly as `nbs/experiments/train.ipynb` evaluates a trained policy
(`evaluate_policy` on the held-out prompts, the runs' `eval_prompts` and `eval_samples`, one thread), once per seed of
the runs, so each run can be paired with the base measured under its own sampling seed. Each measurement is written
with `frpo_nb.results.write_base_eval` to `<sweep folder>/_bases/base_eval/<base>-<setting>-s<seed>.json`; one that is
there already (with the same settings) is kept unless --force. Then prints `frpo_nb.results.base_vs_rl` of the folder:
per method, the mean after RL, the base's mean over the same seeds and the mean paired difference (run − base), each
with a 95 % t-interval over seeds. `make figures` (nbs/figures/table_diagnostics.ipynb) rebuilds the same table into
figures/table_base_vs_rl.{csv,md} from the written files without loading a model. Ours, tiny scale.
"""
import argparse, json
from pathlib import Path

import pandas as pd
import torch

from frpo_nb.evaluate import evaluate_policy
from frpo_nb.results import (base_eval_path, base_vs_rl, fmt_ci, load_base_evals, load_runs, markdown_table,
                             write_base_eval)
from frpo_nb.sweep import template_parameters
from frpo_nb.tiny import load_tiny

TEMPLATE = Path(__file__).resolve().parents[1] / "nbs/experiments/train.ipynb"


def one_value(runs, name: str, default):
    "The single value of parameter `name` over `runs` (the template's default where a run has none)."
    values = {default if v is None or v != v else v for v in (runs[name] if name in runs.columns else [default] * len(runs))}
    if len(values) != 1: raise SystemExit(f"the train runs of one sweep folder have {len(values)} values of {name} ({values}); "
                                          "their base cannot be measured as all of them were")
    return values.pop()


def measure(results: str, force: bool) -> int:
    "Measure the bases of the train runs under `results` where not measured yet; returns the number of measurements written."
    runs = load_runs(results, kind="train")
    if runs.empty or "base" not in runs.columns: raise SystemExit(f"no finished train runs (with a base metric) under {results}")
    defaults, written = template_parameters(TEMPLATE), 0
    runs = runs.assign(sweep_dir=[str(Path(d).parent) for d in runs.run_dir], base_name=[Path(str(b)).name for b in runs.base])
    for (sweep_dir, setting, base), g in runs.groupby(["sweep_dir", "setting", "base_name"], sort=True):
        settings = {"eval_samples": int(one_value(g, "eval_samples", defaults["eval_samples"])),
                    "eval_prompts": one_value(g, "eval_prompts", defaults["eval_prompts"])}
        if settings["eval_prompts"] is not None: settings["eval_prompts"] = int(settings["eval_prompts"])
        seeds = sorted(int(s) for s in g.seed.unique())
        todo = [s for s in seeds if force or not (p := base_eval_path(sweep_dir, base, setting, s)).is_file()
                or json.loads(p.read_text()).get("settings") != settings]
        if not todo: continue
        base_dir = Path(sweep_dir) / "_bases" / base         # where the train template keeps it; else where the runs found it
        model, tok = load_tiny(base_dir if base_dir.is_dir() else Path(str(g.base.iloc[0])))
        for seed in todo:
            metrics = evaluate_policy(model, tok, setting, n_prompts=settings["eval_prompts"],
                                      n_samples=settings["eval_samples"], seed=seed)
            print(f"{sweep_dir}: {base} in {setting} at seed {seed}:", {k: round(v, 4) for k, v in metrics.items()})
            write_base_eval(sweep_dir, base, setting, seed, metrics, **settings)
            written += 1
    return written


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results", nargs="+", help="a sweep's results folder (e.g. results/tiny-safety) or a parent of several")
    p.add_argument("--force", action="store_true", help="measure again where a measurement exists")
    a = p.parse_args()
    torch.set_num_threads(1)                                 # as the train template
    for results in a.results:
        n = measure(results, a.force)
        table = base_vs_rl(load_runs(results, kind="train"), load_base_evals(results))
        print(f"\n{results}: {n} base measurement(s) written; paired by seed (mean [95 % t-interval] over n seeds):\n")
        cells = {name: [fmt_ci(*v) for v in table[[f"{p}_mean", f"{p}_lo", f"{p}_hi"]].itertuples(index=False)]
                 for name, p in (("after RL", "rl"), ("base", "base"), ("run − base", "diff"))}
        print(markdown_table(pd.DataFrame({"series": table.series, "metric": table.metric, "n": table.n, **cells})))


if __name__ == "__main__":
    main()
