"""One-seed probe of safety RL on the tiny base: refusal and helpfulness on held-out prompts after RL.

    .venv/bin/python bench/safety_rl_probe.py --base DIR [--method frpo --lamb 0.2 --beta 0.005] \
        [--steps 60 --lr 3e-4 --batch 32 --generations 8] [--normal-copies 1] [--seed 0] [--out bench/safety_probes.jsonl]

Prints (and appends to --out) one JSON line: settings, train seconds, `evaluate_policy` on the held-out safety
prompts before and after RL (the study's metrics, `--eval-samples` samples per prompt), and how the sampled answers
to normal prompts fall short of full helpfulness: refusals, answers without steps, answers that miss request words.
`--normal-copies K` repeats each normal training prompt K times (the study: 1, the paper's 50/50 mix). Ours, tiny scale.
"""
import argparse, collections, json, tempfile, time

import torch
from frpo_nb.core import seed_everything, trainer_device_args
from frpo_nb.data import repeat_task, tiny_safety_prompts
from frpo_nb.finetune import eval_prompts, evaluate_policy, sample_completions
from frpo_nb.rewards import compliance, gives_steps, helpfulness_reward, is_refusal, prompt_text, safety_reward
from frpo_nb.tiny import load_tiny
from frpo_nb.trainer import FRPOConfig, FRPOTrainer


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
    p.add_argument("--method", default="grpo", choices=["grpo", "frpo"])
    p.add_argument("--lamb", type=float, default=None)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--scale-rewards", default="group")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--normal-copies", type=int, default=1)
    p.add_argument("--eval-samples", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    seed_everything(a.seed)
    train = tiny_safety_prompts()["train"]
    if a.normal_copies > 1: train = repeat_task(train, "normal", a.normal_copies).shuffle(seed=a.seed)
    loss = (dict(loss_type="frpo", frpo_lambda=a.lamb) if a.method == "frpo"
            else dict(loss_type="grpo", scale_rewards=a.scale_rewards))
    t0 = time.time()
    with tempfile.TemporaryDirectory() as out:
        config = FRPOConfig(output_dir=out, max_steps=a.steps, learning_rate=a.lr, per_device_train_batch_size=a.batch,
                            num_generations=a.generations, max_completion_length=48, beta=a.beta,
                            temperature=a.temperature, seed=a.seed, logging_steps=10, report_to="none",
                            save_strategy="no", disable_tqdm=True, **loss, **trainer_device_args())
        trainer = FRPOTrainer(model=a.base, reward_funcs=[safety_reward, helpfulness_reward], args=config,
                              train_dataset=train)
        trainer.train()
        trainer.save_model(out + "/policy"); trainer.processing_class.save_pretrained(out + "/policy")
        seconds = time.time() - t0
        after = measure(out + "/policy", a.base, a)
    log = [r for r in trainer.state.log_history if "reward" in r]
    settings = vars(a) | ({"scale_rewards": None} if a.method == "frpo" else {})
    row = {"settings": settings, "train_seconds": round(seconds, 1), "before": measure(a.base, a.base, a), "after": after,
           "train_reward": {r["step"]: round(r["reward"], 3) for r in log}}
    print(json.dumps(row))
    if a.out:
        with open(a.out, "a") as f: f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
