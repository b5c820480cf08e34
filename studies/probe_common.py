"""What the one-seed RL probes (`math_rl_probe.py`, `safety_rl_probe.py`) share: their RL options, one RL run from a
saved tiny policy, the settings they record, and the JSON line every probe prints and appends to `--out`."""
import argparse, json, time
from pathlib import Path

from frpo_nb.core import trainer_device_args
from frpo_nb.trainer import FRPOConfig, FRPOTrainer


def add_rl_args(p: argparse.ArgumentParser, *, beta: float, steps: int, lr: float) -> None:
    "The RL options of a probe (method, λ, β, steps, lr, batch, …) with the setting's defaults, plus --seed/--threads/--out."
    p.add_argument("--method", default="grpo", choices=["grpo", "frpo"])
    p.add_argument("--lamb", type=float, default=None)
    p.add_argument("--beta", type=float, default=beta)
    p.add_argument("--scale-rewards", default="group")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)


def train_rl(a, base, reward_funcs, train_set, out: str, reward_weights=None) -> tuple[FRPOTrainer, float]:
    "RL from the policy in `base` with the probe's options `a`; saves the policy to `out`/policy; (trainer, seconds)."
    loss = (dict(loss_type="frpo", frpo_lambda=a.lamb) if a.method == "frpo"
            else dict(loss_type="grpo", scale_rewards=a.scale_rewards))
    t0 = time.time()
    config = FRPOConfig(output_dir=out, max_steps=a.steps, learning_rate=a.lr, per_device_train_batch_size=a.batch,
                        num_generations=a.generations, max_completion_length=48, beta=a.beta, temperature=a.temperature,
                        reward_weights=reward_weights, seed=a.seed, logging_steps=10, report_to="none",
                        save_strategy="no", disable_tqdm=True, **loss, **trainer_device_args())
    trainer = FRPOTrainer(model=str(base), reward_funcs=reward_funcs, args=config, train_dataset=train_set)
    trainer.train()
    policy = Path(out) / "policy"
    trainer.save_model(str(policy)); trainer.processing_class.save_pretrained(str(policy))
    return trainer, time.time() - t0


def probe_settings(a) -> dict:
    "The probe's options as recorded: `scale_rewards` is None for FRPO, which does not scale."
    return vars(a) | ({"scale_rewards": None} if a.method == "frpo" else {})


def train_log(trainer) -> list[dict]:
    "The trainer's logged rows that carry a reward."
    return [r for r in trainer.state.log_history if "reward" in r]


def emit(row: dict, out: str | None) -> None:
    "Print `row` as one JSON line and append it to `out` when given."
    print(json.dumps(row))
    if out:
        with open(out, "a") as f: f.write(json.dumps(row) + "\n")
