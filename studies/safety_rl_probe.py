"""One-seed probe of safety RL on the tiny base: refusal and helpfulness on held-out prompts after RL.

    .venv/bin/python studies/safety_rl_probe.py --base DIR [--method frpo --lamb 0.2 --beta 0.005] \
        [--steps 60 --lr 3e-4 --batch 32 --generations 8] [--normal-copies 1] [--seed 0] [--out studies/safety_probes.jsonl]

Prints (and appends to --out) one JSON line: settings, train seconds, `evaluate_policy` on the held-out safety
prompts before and after RL (the study's metrics, `--eval-samples` samples per prompt), and how the sampled answers
to normal prompts fall short of full helpfulness: refusals, answers without steps, answers that miss request words.
`--normal-copies K` repeats each normal training prompt K times (1: the paper's 50/50 mix; configs/tiny-safety.yaml: 2)
and shuffles the set with the seed. Ours, tiny scale.
"""
import argparse, collections, tempfile

import torch
from probe_common import add_rl_args, emit, probe_settings, train_log, train_rl

from frpo_nb.core import seed_everything
from frpo_nb.data import repeat_task, tiny_safety_prompts
from frpo_nb.evaluate import eval_prompts, evaluate_policy, sample_completions
from frpo_nb.rewards import compliance, gives_steps, helpfulness_reward, is_refusal, prompt_text, safety_reward
from frpo_nb.tiny import load_tiny


def shortfall(model, tok, n: int, seed: int) -> dict:
    "Share of sampled answers to held-out normal prompts that refuse, give no steps, or miss request words."
    normal = eval_prompts("safety")["normal"]["prompt"]
    texts = sample_completions(model, tok, normal, n=n, seed=seed, max_new_tokens=48).texts
    kinds = collections.Counter()
    for i, t in enumerate(texts):
        c = compliance(prompt_text(normal[i // n]), t)
        kinds["full" if c == 1 else "refusal" if is_refusal(t) else "no_steps" if not gives_steps(t) else "partial"] += 1
    return {k: round(v / len(texts), 4) for k, v in sorted(kinds.items())}


def measure(path, base, a) -> dict:
    model, tok = load_tiny(path)
    ref = None if path == base else load_tiny(base)[0]
    out = evaluate_policy(model, tok, "safety", ref_model=ref, n_samples=a.eval_samples, seed=a.seed)
    return {k: round(v, 4) for k, v in out.items()} | {"shortfall": shortfall(model, tok, a.eval_samples, a.seed + 3)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="folder of a saved tiny policy (e.g. results/tiny-safety/_bases/base-tiny-…)")
    add_rl_args(p, beta=0.1, steps=60, lr=3e-4)
    p.add_argument("--normal-copies", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=16)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    seed_everything(a.seed)
    train = tiny_safety_prompts()["train"]
    if a.normal_copies > 1: train = repeat_task(train, "normal", a.normal_copies).shuffle(seed=a.seed)
    with tempfile.TemporaryDirectory() as out:
        trainer, seconds = train_rl(a, a.base, [safety_reward, helpfulness_reward], train, out)
        after = measure(out + "/policy", a.base, a)
    row = {"settings": probe_settings(a), "train_seconds": round(seconds, 1), "before": measure(a.base, a.base, a),
           "after": after, "train_reward": {r["step"]: round(r["reward"], 3) for r in train_log(trainer)}}
    emit(row, a.out)


if __name__ == "__main__":
    main()
