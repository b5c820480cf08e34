"""FRPO's training diagnostics at the end of upstream RL, per method series, from a results folder.

    .venv/bin/python bench/train_diagnostics.py results/tiny-safety

For every finished train run: the mean of its last 3 logged values (TRL logs every 10 steps) of the
effective sample size of FRPO's per-group weights (`frpo/ess_mean`, of k completions), the share of
groups whose k rewards are all equal (`frac_reward_zero_std`: no gradient for GRPO or FRPO), the mean
reward and the KL to the base; then the mean over seeds per series. Reads files only.
"""
import json
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean

KEYS = ("frpo/ess_mean", "frac_reward_zero_std", "reward", "kl")


def main(results: str) -> None:
    rows = defaultdict(list)
    for result in sorted(Path(results).glob("*/result.json")):
        rec = json.loads(result.read_text())
        log = result.parent / "train_log.jsonl"
        if rec.get("kind") != "train" or rec.get("status") != "done" or not log.is_file(): continue
        last = [json.loads(line) for line in log.read_text().splitlines() if line.strip()][-3:]
        rows[rec["params"]["method_label"]].append({k: mean(r[k] for r in last) if all(k in r for r in last) else None
                                                    for k in KEYS})
    if not rows: sys.exit(f"no finished train runs with train_log.jsonl under {results}")
    print(f"{'series':16s} {'runs':>4s} " + " ".join(f"{k:>22s}" for k in KEYS))
    for label, runs in sorted(rows.items()):
        cells = [mean(v) if (v := [r[k] for r in runs if r[k] is not None]) else None for k in KEYS]
        print(f"{label:16s} {len(runs):4d} " + " ".join(f"{c:22.3f}" if c is not None else f"{'–':>22s}" for c in cells))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/tiny-safety")
