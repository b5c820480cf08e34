"""One-seed probe of math RL on the tiny base: does GRPO/FRPO raise held-out greedy accuracy?

    .venv/bin/python bench/math_rl_probe.py --boxed-rate 0.4 --steps 100 --lr 1e-4 --batch 32 \
        [--method frpo --lamb 0.5] [--temperature 1.0] [--seed 0] [--out bench/math_probes.jsonl]

`--boxed-rate R` builds (once, cached in `--cache`) the default base with `WarmUp(boxed_rate=R)`; `--base DIR`
takes any saved tiny policy instead.

Prints (and appends to --out) one JSON line: settings, wall time, greedy accuracy per level and overall on the
120 held-out problems before and after RL, and the train reward and format rate every 10 steps. Ours, tiny scale.
"""
import argparse, collections, json, tempfile, time
from pathlib import Path

import torch

from frpo_nb.core import seed_everything, trainer_device_args
from frpo_nb.data import tiny_math
from frpo_nb.finetune import sample_completions
from frpo_nb.rewards import math_correct_reward, math_format_reward
from frpo_nb.tiny import WarmUp, load_tiny, tiny_base
from frpo_nb.trainer import FRPOConfig, FRPOTrainer


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
    p.add_argument("--method", default="grpo", choices=["grpo", "frpo"])
    p.add_argument("--lamb", type=float, default=None)
    p.add_argument("--beta", type=float, default=1e-4)
    p.add_argument("--scale-rewards", default="group")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.base is None: a.base = str(tiny_base(a.cache, WarmUp(boxed_rate=a.boxed_rate), progress=True))
    seed_everything(a.seed)
    before = greedy_accuracy(a.base)
    loss = (dict(loss_type="frpo", frpo_lambda=a.lamb) if a.method == "frpo"
            else dict(loss_type="grpo", scale_rewards=a.scale_rewards))
    t0 = time.time()
    with tempfile.TemporaryDirectory() as out:
        config = FRPOConfig(output_dir=out, max_steps=a.steps, learning_rate=a.lr, per_device_train_batch_size=a.batch,
                            num_generations=a.generations, max_completion_length=48, beta=a.beta,
                            temperature=a.temperature, reward_weights=[0.2, 0.8], seed=a.seed, logging_steps=10,
                            report_to="none", save_strategy="no", disable_tqdm=True, **loss, **trainer_device_args())
        trainer = FRPOTrainer(model=a.base, reward_funcs=[math_format_reward, math_correct_reward], args=config,
                              train_dataset=tiny_math()["train"])
        trainer.train()
        trainer.save_model(out + "/policy"); trainer.processing_class.save_pretrained(out + "/policy")
        seconds = time.time() - t0
        after = greedy_accuracy(out + "/policy")
    log = [r for r in trainer.state.log_history if "reward" in r]
    settings = vars(a) | ({"scale_rewards": None} if a.method == "frpo" else {})  # FRPO does not scale
    row = {"settings": settings, "train_seconds": round(seconds, 1), "before": before, "after": after,
           "train_reward": {r["step"]: round(r["reward"], 3) for r in log},
           "train_format": {r["step"]: round(r["rewards/math_format_reward/mean"], 3) for r in log}}
    print(json.dumps(row))
    if a.out:
        with open(a.out, "a") as f: f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
