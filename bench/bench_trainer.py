"""FRPO vs GRPO (TRL loss_type="grpo") training-step time on the same tiny model and batch, interleaved, one process.

    .venv/bin/python bench/bench_trainer.py [--steps 20 --warmup 3 --batch 32 --k 4 --completion-len 32]
    .venv/bin/python bench/bench_trainer.py --sam [--rho 0.05]      # SAM-GRPO vs GRPO instead

With --sam the pair is SAM-GRPO (SAMGRPOTrainer, TRL's GRPO loss, radius --rho) vs GRPO, and the second
measurement is the step without generation (the part SAM repeats; expected ratio ≈ 2: one more forward + backward).

Two measurements, each repeated --steps times per trainer after --warmup untimed steps, the two trainers
alternating (the order flips every repetition):

- full step: TRL's `training_step` (generation of the batch, rewards, advantages, forward + backward of the loss)
  plus the AdamW step. Learning rate 0 keeps both models at the same weights, and the RNG is re-seeded before
  every step, so both trainers sample exactly the same completions and differ only in the loss.
- loss step: `compute_loss` + backward on one fixed generated batch (the part FRPO replaces).

Reported: the median over repetitions of the paired ratio FRPO / GRPO (the target, <= 1.05; pairing makes it robust
to load from other processes on a shared machine) and, for reference, the ratio of the medians.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from frpo_nb.tiny import build_tiny  # noqa: E402
from frpo_nb.trainer import FRPOConfig, FRPOTrainer, SAMGRPOConfig, SAMGRPOTrainer  # noqa: E402

WORDS = "apple banana cherry dog egg fig grape house ice jam kite lemon".split()


def even_token_share(completions, completion_ids, **kwargs):
    return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def make_trainer(kind, model_path, prompts, a):
    common = dict(output_dir=tempfile.mkdtemp(prefix="bench_"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                  report_to="none", dataloader_pin_memory=False, save_strategy="no", disable_tqdm=True, seed=0,
                  per_device_train_batch_size=a.batch, num_generations=a.k, max_completion_length=a.completion_len,
                  learning_rate=0.0, scale_rewards="none", beta=a.beta)
    if kind == "frpo":
        trainer = FRPOTrainer(model=model_path, reward_funcs=even_token_share, train_dataset=prompts,
                              args=FRPOConfig(**common, loss_type="frpo", frpo_lambda=1.0))
    elif kind == "sam":
        trainer = SAMGRPOTrainer(model=model_path, reward_funcs=even_token_share, train_dataset=prompts,
                                 args=SAMGRPOConfig(**common, loss_type="grpo", sam_rho=a.rho))
    else:
        trainer = GRPOTrainer(model=model_path, reward_funcs=even_token_share, train_dataset=prompts,
                              args=GRPOConfig(**common, loss_type="grpo"))
    trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def full_step(trainer, rows, seed):
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    trainer.training_step(trainer.model, rows, None)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    return time.perf_counter() - t0


def loss_step(trainer, batch):
    t0 = time.perf_counter()
    trainer.compute_loss(trainer.model, batch).backward()
    dt = time.perf_counter() - t0
    trainer.optimizer.zero_grad()
    return dt


def step_without_generation(trainer, rows, batch):
    "TRL's training_step on a fixed generated batch (generation replaced by the batch) plus AdamW: loss, backward, SAM's pass."
    trainer._generate_and_score_completions = lambda inputs: dict(batch)
    t0 = time.perf_counter()
    trainer.training_step(trainer.model, rows, None)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    dt = time.perf_counter() - t0
    del trainer._generate_and_score_completions
    return dt


def interleaved(fn, names, steps, warmup):
    "Per-trainer step times of `fn(name, rep)`, alternating the order every repetition."
    times = {n: [] for n in names}
    for rep in range(warmup + steps):
        for n in (names if rep % 2 == 0 else names[::-1]):
            dt = fn(n, rep)
            if rep >= warmup: times[n].append(dt)
    return times


def report(label, times, name="frpo", target=" (target <= 1.05)"):
    med = {n: statistics.median(t) for n, t in times.items()}
    per_rep = statistics.median(f / g for f, g in zip(times[name], times["grpo"]))
    up = name.upper()
    print(f"{label}: median {up}/GRPO ratio of paired steps {per_rep:.3f}{target}; ratio of medians "
          f"{med[name] / med['grpo']:.3f}; {up} {med[name] * 1e3:.1f} ms, GRPO {med['grpo'] * 1e3:.1f} ms "
          f"(medians of {len(times[name])})")
    return per_rep, med[name] / med["grpo"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=32, help="completions per step (per_device_train_batch_size)")
    p.add_argument("--k", type=int, default=4, help="num_generations (completions per prompt)")
    p.add_argument("--completion-len", type=int, default=32)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--sam", action="store_true", help="SAM-GRPO vs GRPO instead of FRPO vs GRPO")
    p.add_argument("--rho", type=float, default=0.05, help="SAM's radius with --sam")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    corpus = [" ".join(WORDS[(i * j) % 12] for j in range(1, 8)) for i in range(200)]
    model_path = str(build_tiny(tempfile.mkdtemp(prefix="bench_tiny_") + "/model", corpus, vocab_size=512,
                                hidden_size=a.hidden, intermediate_size=4 * a.hidden, num_hidden_layers=a.layers))
    prompts = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"{x} {y}"}] for x in WORDS for y in WORDS]})
    rows = [prompts[i] for i in range(a.batch // a.k) for _ in range(a.k)]
    name = "sam" if a.sam else "frpo"
    trainers = {kind: make_trainer(kind, model_path, prompts, a) for kind in (name, "grpo")}
    n_params = sum(q.numel() for q in trainers[name].model.parameters())
    print(f"machine: {platform.machine()} {platform.processor()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model {n_params / 1e6:.2f}M params, batch {a.batch} = "
          f"{a.batch // a.k} prompts x k={a.k}, max completion {a.completion_len} tokens, beta={a.beta}"
          + (f", SAM rho={a.rho}" if a.sam else ""))
    full = interleaved(lambda n, rep: full_step(trainers[n], rows, rep), [name, "grpo"], a.steps, a.warmup)
    batch = trainers[name]._generate_and_score_completions(rows)
    if a.sam:
        train = interleaved(lambda n, rep: step_without_generation(trainers[n], rows, batch), [name, "grpo"], a.steps,
                            a.warmup)
        return {"full_step": report("full step (generate + loss + backward + AdamW)", full, name, ""),
                "train_step": report("step without generation (loss + backward [SAM: twice] + AdamW, fixed batch)",
                                     train, name, " (expected ~2)")}
    loss = interleaved(lambda n, rep: loss_step(trainers[n], batch), ["frpo", "grpo"], a.steps, a.warmup)
    return {"full_step": report("full step (generate + loss + backward + AdamW)", full),
            "loss_step": report("loss step (compute_loss + backward, fixed batch)", loss)}


if __name__ == "__main__":
    main(sys.argv[1:])
