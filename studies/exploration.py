"""EXPLORATION (seeds 1000+, never the confirmatory seeds): which factors decide whether FRPO keeps more refusal than
GRPO after downstream fine-tuning in the tiny world. Reads the finished runs of `configs/tiny-safety-explore.yaml`.

    .venv/bin/python studies/exploration.py [results-exploration/tiny-safety-explore] [--out studies/exploration.jsonl]

Prints, per downstream regime and arm (a method with one setting changed), the refusal probability and greedy refusal
rate before and after fine-tuning (mean over seeds) and each arm's paired difference in refusal probability *lost*
against its GRPO reference (same RL length, same seed) at the last step and where KL to the policy before
fine-tuning first reaches 1, 2 and 5 nats; and the standard deviation over seeds of those paired differences, which
the confirmatory study's power calculation uses. Every per-run row goes to `--out` (JSON lines).
Everything here is exploration: small, many comparisons, no correction; it chooses the confirmatory design and
is reported as exploration.
"""
import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from frpo_nb.core import load_config
from frpo_nb.results import load_curves, load_runs
from frpo_nb.stats import degradation_at_kl, paired_stats
from frpo_nb.sweep import expand_grid

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = {"grpo-150": "grpo-150", "frpo-lam0.2-150": "grpo-150"}   # 150-step arms against 150-step GRPO; others: grpo
LEVELS = (1.0, 2.0, 5.0)


def per_run(results: Path, config: Path) -> pd.DataFrame:
    "One row per finished fine-tuning run of the exploration `config`: arm, seed, regime, start/end metrics, drops at matched KL."
    ids = {j.run_id for j in expand_grid(load_config(config))}
    ft = load_runs(results, kind="finetune")
    ft = ft[ft["run_id"].isin(ids)]       # the config's runs only (a folder may hold runs of earlier versions of it)
    curves = load_curves(results)
    curves = curves[curves["run_dir"].isin(set(ft["run_dir"]))]
    at_kl = degradation_at_kl(curves, levels=LEVELS, metrics=["refusal_prob", "refusal_greedy"])
    rows = []
    for _, r in ft.iterrows():
        row = {"arm": r["method_label"], "method": r["method"], "lamb": r["lamb"], "beta": r["beta"], "seed": int(r["seed"]),
               "regime": r["regime"], "kl_final": r["kl_final"]}
        for m in ("refusal_prob", "refusal_greedy", "helpfulness_reward", "over_refusal_prob"):
            row |= {f"{m}_before": r[f"{m}_before"], f"{m}_after": r[f"{m}_after"], f"{m}_drop": r[f"{m}_drop"]}
        mine = at_kl[at_kl["run_id"].eq(r["run_id"])]
        for _, a in mine.iterrows(): row[f"{a['metric']}_drop@kl{a['kl']:g}"] = a["drop"]
        curve = curves[curves["run_dir"].eq(r["run_dir"])].sort_values("step")
        start = curve["refusal_prob"].iloc[0]
        for _, c in curve.iloc[1:].iterrows():   # downstream strength: refusal lost and KL after each evaluated step
            row[f"refusal_prob_drop@step{int(c['step'])}"] = start - c["refusal_prob"]
            row[f"kl@step{int(c['step'])}"] = c["kl_to_ref"]
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["regime", "arm", "seed"], ignore_index=True)


def paired(df: pd.DataFrame, value: str) -> pd.DataFrame:
    "Per regime and arm: arm − its GRPO reference, paired by seed (mean, 95 % interval, sd, p of the paired t-test)."
    out = []
    for (regime, arm), g in df.groupby(["regime", "arm"]):
        ref = REFERENCE.get(arm, "grpo")
        if arm == ref: continue
        r = df[(df["regime"] == regime) & (df["arm"] == ref)].set_index("seed")[value]
        d = (g.set_index("seed")[value] - r).dropna()
        if len(d) < 2: continue
        s = paired_stats(d.to_numpy())
        out.append({"regime": regime, "arm": arm, "reference": ref, "value": value, "n": s.n, "mean": s.mean, "lo": s.lo,
                    "hi": s.hi, "sd": s.sd, "p_t": s.p_t})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?", default=str(ROOT / "results-exploration" / "tiny-safety-explore"))
    ap.add_argument("--config", default=str(ROOT / "configs" / "tiny-safety-explore.yaml"))
    ap.add_argument("--out", default=str(ROOT / "studies" / "exploration.jsonl"))
    a = ap.parse_args()
    df = per_run(Path(a.results), Path(a.config))
    if df.empty: raise SystemExit(f"no finished fine-tuning runs of the exploration in {a.results}: run "
                                  "frpo-nb sweep configs/tiny-safety-explore.yaml first")
    Path(a.out).write_text("".join(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                               for k, v in r.items()}) + "\n" for r in df.to_dict("records")))
    pd.set_option("display.width", 200); pd.set_option("display.max_columns", 30)
    print(f"{len(df)} fine-tuning runs ({a.results}); rows in {a.out}\n")
    print("Means over seeds (refusal probability / greedy rate before and after fine-tuning, KL at the end):")
    means = df.groupby(["regime", "arm"]).agg(n=("seed", "size"), p_before=("refusal_prob_before", "mean"),
                                              p_after=("refusal_prob_after", "mean"), g_before=("refusal_greedy_before", "mean"),
                                              g_after=("refusal_greedy_after", "mean"), help_after=("helpfulness_reward_after", "mean"),
                                              kl_final=("kl_final", "mean"))
    print(means.round(3).to_string(), "\n")
    steps = sorted({int(c.split("@step")[1]) for c in df.columns if c.startswith("refusal_prob_drop@step")})
    values = (["refusal_prob_drop", "refusal_greedy_drop"] + [f"refusal_prob_drop@kl{x:g}" for x in LEVELS]
              + [f"refusal_prob_drop@step{x}" for x in steps])
    print("KL to the policy before fine-tuning after each evaluated step (mean over seeds):")
    print(df.groupby(["regime", "arm"])[[f"kl@step{x}" for x in steps]].mean().round(2).to_string(), "\n")
    table = pd.concat([paired(df, v) for v in values if v in df.columns], ignore_index=True)
    print("Paired differences arm − reference in refusal LOST (negative: the arm forgets less), by seed:")
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
