"""How fast this machine's CPU kernels are right now: one thread, the tiny model's MLP product ([256x128] @ [128x512],
float32), best of 5 rounds of 1000. Timings in bench/README.md taken at different times are comparable only when this
figure is about the same; the shared VM has had periods at about half its usual rate.

    .venv/bin/python bench/machine_probe.py          # prints e.g. "matmul [256x128]@[128x512], 1 thread: 197 GFLOP/s"
"""
import time

import torch


def probe(m: int = 256, k: int = 128, n: int = 512, rounds: int = 5, calls: int = 1000) -> float:
    "GFLOP/s of the best round."
    torch.set_num_threads(1)
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(100): a @ b
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls): a @ b
        best = min(best, (time.perf_counter() - t) / calls)
    return 2 * m * k * n / best / 1e9


if __name__ == "__main__":
    print(f"matmul [256x128]@[128x512], 1 thread: {probe():.0f} GFLOP/s")
