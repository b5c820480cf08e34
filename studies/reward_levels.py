"""How many distinct reward values does a group of 8 completions hold in the tiny world's safety RL?

    .venv/bin/python studies/reward_levels.py POLICY [POLICY ...] [--labels A,B] [--samples 8] [--seed 0] [--out FILE.json]

For each policy folder (a base policy `results/<sweep>/_bases/base-*`, or a train run's `policy/`): 8 completions
(T = 1, at most 48 new tokens, as the RL trainer samples them) of every RL training prompt, scored by the rewards RL
uses — on harmful prompts the safety reward (`rule`: today's rule judge `frpo_nb.rewards.safety_score`, the default `safety_reward_kind`; `graded`:
the judge-like option `graded_safety_score`, `safety_reward_kind: graded`; `binary`: refused or not), on benign prompts the helpfulness
reward — and per group the number of distinct reward values: 1 (a constant group, no gradient), 2 (FRPO is exactly
GRPO-unscaled with a bigger step: nbs/02_theory.ipynb, section 3), 3 or more (FRPO's direction differs). Prints a
table and writes the counts (and the distinct values seen) to --out. The numbers are ours, tiny scale; they depend
on the policy and the seed.
"""
import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from frpo_nb.data import tiny_safety_prompts
from frpo_nb.evaluate import sample_completions
from frpo_nb.rewards import graded_safety_score, helpfulness_score, prompt_text, refusal_score, safety_score
from frpo_nb.tiny import load_tiny

SCORES = {"safety/rule": ("safety", safety_score), "safety/binary": ("safety", refusal_score),
          "safety/graded": ("safety", graded_safety_score),
          "normal/helpfulness": ("normal", helpfulness_score)}


def levels(model, tokenizer, samples: int, seed: int) -> dict:
    "Per score: a histogram of distinct values per group, and how often each value occurs."
    train = tiny_safety_prompts()["train"]
    out = {}
    for task in ("safety", "normal"):
        rows = [r for r in train if r["task"] == task]
        s = sample_completions(model, tokenizer, [r["prompt"] for r in rows], n=samples, max_new_tokens=48, seed=seed)
        for name, (t, score) in SCORES.items():
            if t != task: continue
            r = torch.tensor([score(prompt_text(rows[i // samples]["prompt"]), text) for i, text in enumerate(s.texts)])
            groups = r.view(len(rows), samples)
            hist = Counter(len(set(g.tolist())) for g in groups)
            out[name] = {"groups": len(rows), "distinct_values_per_group": {str(k): hist[k] for k in sorted(hist)},
                         "mean_reward": round(r.mean().item(), 4),
                         "values": {f"{v:.4g}": n for v, n in sorted(Counter(r.tolist()).items())}}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("policies", nargs="+", metavar="POLICY")
    p.add_argument("--labels", help="comma-separated names of the policies in the output (default: their paths)")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    labels = a.labels.split(",") if a.labels else [str(p) for p in a.policies]
    if len(labels) != len(a.policies): p.error(f"--labels: {len(labels)} names for {len(a.policies)} policies")
    report = {}
    for policy, label in zip(a.policies, labels):
        model, tokenizer = load_tiny(policy)
        report[label] = levels(model, tokenizer, a.samples, a.seed)
        for name, r in report[label].items():
            hist = r["distinct_values_per_group"]
            print(f"{label}  {name:20s} groups {r['groups']:3d}  distinct values per group: "
                  + ", ".join(f"{k}: {n} ({n / r['groups']:.0%})" for k, n in hist.items())
                  + f"  mean reward {r['mean_reward']:.3f}  values seen {len(r['values'])}")
    if a.out: a.out.write_text(json.dumps({"samples": a.samples, "seed": a.seed, "policies": report}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
