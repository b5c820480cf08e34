"""Forward + backward time of the FRPO loss at paper scale, against a per-group loop and GRPO's surrogate.

    .venv/bin/python bench/bench_loss.py [--groups 256 --k 8 --T 512 --reps 15]

Timings are interleaved (loop order rotates each repetition) and reported as ratios of medians
measured in the same process, so a noisy machine affects all three alike.
"""
import argparse
import platform
import statistics
import time

import torch

from frpo_nb.loss import frpo_loss, frpo_loss_reference, grpo_surrogate
from frpo_nb.testing import random_frpo_batch


def fwd_bwd(fn, batch, **kw):
    logps = torch.nn.functional.logsigmoid(batch["logits"].detach()).requires_grad_(True)
    t0 = time.perf_counter()
    out = fn(logps, batch["completion_mask"], batch["advantages"], **kw)
    (out[0] if isinstance(out, tuple) else out).backward()
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, default=256)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--T", type=int, default=512)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--loop-reps", type=int, default=3, help="repetitions of the (slow) per-group loop")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    batch = random_frpo_batch([a.k] * a.groups, T=a.T, seed=0, dtype=torch.float32)
    old, ids = batch["old_per_token_logps"], batch["group_ids"]
    fns = {
        "frpo_loss": lambda lp, m, adv: frpo_loss(lp, m, adv, ids, lamb=0.5, old_per_token_logps=old),
        "grpo_surrogate": lambda lp, m, adv: grpo_surrogate(lp, m, adv, old_per_token_logps=old),
        "per_group_loop": lambda lp, m, adv: frpo_loss_reference(lp, m, adv, ids, lamb=0.5, old_per_token_logps=old),
    }
    for fn in fns.values(): fwd_bwd(fn, batch)  # warm-up
    times = {name: [] for name in fns}
    for rep in range(a.reps):
        names = list(fns)[rep % 3:] + list(fns)[:rep % 3]
        for name in names:
            if name == "per_group_loop" and len(times[name]) >= a.loop_reps: continue
            times[name].append(fwd_bwd(fns[name], batch))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; G={a.groups} k={a.k} T={a.T} float32, forward+backward")
    for name, t in times.items(): print(f"  {name:15s} median {med[name] * 1e3:9.1f} ms over {len(t)} reps")
    print(f"per-group loop / frpo_loss = {med['per_group_loop'] / med['frpo_loss']:.1f}x  (target >= 20x)")
    print(f"frpo_loss / grpo_surrogate = {med['frpo_loss'] / med['grpo_surrogate']:.2f}x  (target <= 2x)")
    return med


if __name__ == "__main__":
    main()
