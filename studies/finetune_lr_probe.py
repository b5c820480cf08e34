"""Probe a downstream regime's learning rate on RL checkpoints before a study (tune the regime, not the metric).

    .venv/bin/python studies/finetune_lr_probe.py --setting math --regime sft-code --lr 1e-4 \
        results/tiny-math/math-tiny-grpo-s0-*/policy [more policies] [--out studies/finetune_probes.jsonl]

For each policy: `frpo_nb.finetune.finetune` with the study's settings (60 steps, curve every 20), printing and
appending one JSON line: policy, regime, lr, and the curve (step, the setting's metrics, KL to the start).
Ours, tiny scale.
"""
import argparse, tempfile
from pathlib import Path

import torch
from probe_common import emit

from frpo_nb.core import read_jsonl, seed_everything
from frpo_nb.finetune import finetune


def main():
    p = argparse.ArgumentParser()
    p.add_argument("policies", nargs="+")
    p.add_argument("--setting", required=True, choices=["safety", "math"])
    p.add_argument("--regime", required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--eval-samples", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(1)
    for policy in a.policies:
        seed_everything(a.seed)
        with tempfile.TemporaryDirectory() as d:
            curve = Path(d) / "curve.jsonl"
            finetune(policy, a.regime, setting=a.setting, curve_path=curve, max_steps=a.steps, learning_rate=a.lr,
                     every=a.every, seed=a.seed, eval_kwargs=dict(n_samples=a.eval_samples))
            rows = read_jsonl(curve)
        row = {"policy": str(policy), "regime": a.regime, "lr": a.lr, "steps": a.steps,
               "curve": [{k: round(v, 4) for k, v in r.items()} for r in rows]}
        emit(row, a.out)


if __name__ == "__main__":
    main()
