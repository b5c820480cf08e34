"""One-seed probe of math RL on the tiny base: does GRPO/FRPO raise held-out greedy accuracy?

    .venv/bin/python studies/math_rl_probe.py --boxed-rate 0.4 --steps 100 --lr 1e-4 --batch 32 \
        [--method frpo --lamb 0.5] [--temperature 1.0] [--seed 0] [--out studies/math_probes.jsonl]

`--boxed-rate R` builds (once, cached in `--cache`) the default base with `WarmUp(boxed_rate=R)`; `--base DIR`
takes any saved tiny policy instead.

Prints (and appends to --out) one JSON line: settings, wall time, greedy accuracy per level and overall on the
120 held-out problems before and after RL, and the train reward and format rate every 10 steps. Ours, tiny scale.
"""
import argparse, collections, tempfile

import torch
from probe_common import add_rl_args, emit, probe_settings, train_log, train_rl

from frpo_nb.core import seed_everything
from frpo_nb.data import tiny_math
from frpo_nb.evaluate import sample_completions
from frpo_nb.rewards import math_correct_reward, math_format_reward
from frpo_nb.tiny import WarmUp, load_tiny, tiny_base


def greedy_accuracy(path) -> dict:
    model, tok = load_tiny(path)
    test = tiny_math()["test"]
    texts = sample_completions(model, tok, test["prompt"], greedy=True, max_new_tokens=48).texts
    correct = math_correct_reward([[{"content": t}] for t in texts], answer=test["answer"])
    boxed = math_format_reward([[{"content": t}] for t in texts])
    by = collections.defaultdict(list)
    for level, c in zip(test["level"], correct): by[level].append(c)
    return {"accuracy": sum(correct) / len(correct), "format": sum(boxed) / len(boxed),
            **{f"level{k}": sum(v) / len(v) for k, v in sorted(by.items())}}


def main():
    p = argparse.ArgumentParser()
    base = p.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", help="folder of a saved tiny policy")
    base.add_argument("--boxed-rate", type=float, help="build/reuse the default base with this WarmUp.boxed_rate")
    p.add_argument("--cache", default="results/_probe_bases", help="where --boxed-rate bases are cached")
    add_rl_args(p, beta=1e-4, steps=100, lr=1e-4)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.base is None: a.base = str(tiny_base(a.cache, WarmUp(boxed_rate=a.boxed_rate), progress=True))
    seed_everything(a.seed)
    before = greedy_accuracy(a.base)
    with tempfile.TemporaryDirectory() as out:
        trainer, seconds = train_rl(a, a.base, [math_format_reward, math_correct_reward], tiny_math()["train"], out,
                                    reward_weights=[0.2, 0.8])
        after = greedy_accuracy(out + "/policy")
    log = train_log(trainer)
    row = {"settings": probe_settings(a), "train_seconds": round(seconds, 1), "before": before, "after": after,
           "train_reward": {r["step"]: round(r["reward"], 3) for r in log},
           "train_format": {r["step"]: round(r["rewards/math_format_reward/mean"], 3) for r in log}}
    emit(row, a.out)


if __name__ == "__main__":
    main()
