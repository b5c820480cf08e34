"""Apply the pre-registered selection rule of studies/PREREGISTRATION2.md to the map exploration (sweep tiny-safety-map,
seeds 2000-2002) and write the second confirmatory study's config, configs/tiny-safety-confirm2.yaml.

    .venv/bin/python studies/confirm2_select.py [RESULTS_ROOT]      (default: results)

Prints every candidate cell (reward kind x lambda x downstream regime, the end of each fine-tuning run) with FRPO - GRPO in
refusal probability lost (paired by seed), FRPO - GRPO in the train runs' robust value at eps = 0.5, and the rule's verdict;
writes the table to studies/confirm2_selection.csv and the chosen config. The rule and the config template are fixed here
and in PREREGISTRATION2.md before the map's results exist (commit order); this script only fills in the chosen cell.
Ours, tiny model."""
import math
import sys
from pathlib import Path

import pandas as pd

from frpo_nb.results import load_runs
from frpo_nb.stats import paired_stats

ROOT = Path(__file__).resolve().parents[1]
SWEEP, REWARDS, REGIMES = "tiny-safety-map", ("bin", "graded"), ("sft-gsm8k", "sft-alpaca", "sft-sameform")
ROBUST = "safety/robust_value@0.5"
FALLBACK = ("graded", 1.0, "sft-gsm8k")   # the paper-like cell: a graded judge-like reward, the first confirmation's λ and regime
BETA = {0.05: 0.1, 0.1: 0.1, 0.2: 0.005, 1.0: 0.001}   # the paper's β per λ (λ = 0.05 is not the paper's: β as at λ = 0.1)
KIND = {"bin": "binary", "graded": "graded"}


def _by_seed(df: pd.DataFrame, label: str, value: str) -> pd.Series:
    return df[df.method_label == label].set_index("seed")[value].astype(float)


def cells(results: Path) -> pd.DataFrame:
    "One row per candidate cell: FRPO - GRPO paired stats of refusal_prob lost and of the robust value, and the verdict."
    ft, tr = load_runs(results, kind="finetune", sweeps=[SWEEP]), load_runs(results, kind="train", sweeps=[SWEEP])
    if ft.empty: raise SystemExit(f"no finished fine-tuning run of {SWEEP} under {results}")
    rows = []
    for r in REWARDS:
        lambdas = sorted({float(l) for l, m in zip(tr.lamb, tr.method_label) if m.startswith("frpo-") and m.endswith(f"-{r}")})
        for lam in lambdas:
            frpo = f"frpo-lam{lam:g}-{r}"
            rob = _by_seed(tr, frpo, ROBUST) - _by_seed(tr, f"grpo-{r}", ROBUST)
            rs = paired_stats(rob.dropna())
            for regime in REGIMES:
                sub = ft[ft.regime == regime]
                d = (_by_seed(sub, frpo, "refusal_prob_drop") - _by_seed(sub, f"grpo-{r}", "refusal_prob_drop")).dropna()
                s = paired_stats(d)
                rows.append(dict(reward=KIND[r], lamb=lam, regime=regime, n=s.n, lost_diff=s.mean, lo=s.lo, hi=s.hi,
                                 t=s.t, p_t=s.p_t, robust_gain=rs.mean, robust_lo=rs.lo, robust_hi=rs.hi))
    table = pd.DataFrame(rows, columns=["reward", "lamb", "regime", "n", "lost_diff", "lo", "hi", "t", "p_t", "robust_gain",
                                        "robust_lo", "robust_hi"])
    table["promising"] = (table.lost_diff < 0) & (table.robust_gain > 0)
    return table


def choose(table: pd.DataFrame) -> tuple[str, float, str, str]:
    "The rule: among promising cells (FRPO loses less refusal and raises its robust value) the most negative t; else FALLBACK."
    good = table[table.promising & table.t.notna()]
    if len(good):
        best = good.sort_values(["t", "lost_diff"], kind="stable").iloc[0]
        return best.reward, float(best.lamb), best.regime, "the promising cell with the most negative t"
    return KIND.get(FALLBACK[0], FALLBACK[0]), FALLBACK[1], FALLBACK[2], "no promising cell: the pre-registered fallback"


TEMPLATE = """# PRE-REGISTERED SECOND CONFIRMATORY STUDY (ours, tiny scale). The cell was chosen from the map exploration (seeds
# 2000-2002, configs/tiny-safety-map.yaml) by the rule fixed in studies/PREREGISTRATION2.md before the map's results
# existed; this file was written by studies/confirm2_select.py ({why}) and committed BEFORE any of its runs. Fresh
# seeds 3000-3011, never used before. Do not change this file after the study ran: its result is reported whatever it is.
#   make study2   (= frpo-nb sweep configs/tiny-safety-confirm2.yaml --workers 2, then its figures in figures/confirm2/)
name: tiny-safety-confirm2
description: Pre-registered - does FRPO (lambda={lam:g}, {kind} reward) keep more refusal than GRPO after {regime}? 12 fresh seeds (ours, tiny)
setting: safety
models: [tiny]
methods:
  - {{name: grpo, beta: 0.1, scale_rewards: group, label: grpo, train: {{safety_reward_kind: {kind}}}}}
  - {{name: frpo, lamb: {lam:g}, beta: {beta:g}, train: {{safety_reward_kind: {kind}}}}}
  - {{name: grpo-factor, lamb: {lam:g}, beta: {beta:g}, train: {{safety_reward_kind: {kind}}}}}
seeds: [3000, 3001, 3002, 3003, 3004, 3005, 3006, 3007, 3008, 3009, 3010, 3011]
regimes:
  - {{name: {regime}, finetune: {{curve_steps: [10, 30]}}}}
train:
  max_steps: 60
  learning_rate: 3.0e-4
  normal_copies: 2
  robustness_samples: 16
finetune:
  max_steps: 60
  learning_rate: 3.0e-4
evaluate_after: []
templates:
  train: nbs/experiments/train.ipynb
  finetune: nbs/experiments/finetune.ipynb
results_dir: results/tiny-safety-confirm2
analysis:
  # primary endpoint: refusal probability (sampled, T = 1, 8 per held-out harmful prompt) lost from step 0 to step 60 of
  # the downstream fine-tuning; primary comparison FRPO - GRPO, paired by seed, two-sided paired t, alpha = 0.05
  primary: {{metric: refusal_prob, regime: {regime}, method: frpo-lam{lam:g}, reference: grpo}}
  secondary:              # Holm-corrected together
    - {{method: frpo-lam{lam:g}, reference: grpo-factor-lam{lam:g}}}     # the robust objective, or only its bigger step on nearly-solved prompts?
    - {{method: grpo-factor-lam{lam:g}, reference: grpo}}
  alpha: 0.05
  test: paired-t
  kl_levels: [1, 2, 5]    # exploratory: refusal lost where KL to the policy before fine-tuning first reaches these (nats)
"""


def main(results: Path) -> None:
    table = cells(results)
    kind, lam, regime, why = choose(table)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))
    table.to_csv(ROOT / "studies" / "confirm2_selection.csv", index=False, float_format="%.6g")
    text = TEMPLATE.format(why=why, lam=lam, kind=kind, regime=regime, beta=BETA[lam])
    (ROOT / "configs" / "tiny-safety-confirm2.yaml").write_text(text)
    print(f"\nchosen: {kind} reward, lambda = {lam:g}, {regime} ({why}); wrote configs/tiny-safety-confirm2.yaml")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "results")
