"""Two-thread torch training steps with OpenMP's waiting threads spinning (the default) or sleeping
(OMP_WAIT_POLICY=PASSIVE), on an idle machine and beside one busy core: why `make test-slow` sets PASSIVE.

    .venv/bin/python bench/bench_omp_wait.py [--steps 40]

Each case runs in a fresh interpreter (the wait policy is read when torch loads OpenMP); "beside a busy core" starts a
one-core busy loop for the case's duration. Prints seconds per case.
"""
import argparse
import os
import subprocess
import sys

STEPS = """
import sys, time, torch, transformers
torch.manual_seed(0); torch.set_num_threads(int(sys.argv[2]))
cfg = transformers.Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                               num_attention_heads=4, num_key_value_heads=2)
m = transformers.Qwen2ForCausalLM(cfg)
x = torch.randint(0, 512, (32, 96))
opt = torch.optim.AdamW(m.parameters(), 1e-3)
t = time.perf_counter()
for _ in range(int(sys.argv[1])):
    out = m(input_ids=x, labels=x); out.loss.backward(); opt.step(); opt.zero_grad()
print(f"{time.perf_counter() - t:.1f}")
"""


def case(steps: int, threads: int, policy: str | None, busy: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": policy} if policy else {})
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try: out = subprocess.run([sys.executable, "-c", STEPS, str(steps), str(threads)], env=env, capture_output=True,
                              text=True, check=True).stdout
    finally:
        if hog: hog.kill(); hog.wait()
    return float(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=40)
    a = p.parse_args()
    print(f"{a.steps} training steps of a 4-layer tiny Qwen2 (hidden 128) on 32 x 96 tokens; {os.cpu_count()} CPUs")
    for busy in (False, True):
        for name, threads, policy in (("2 threads, spinning (default)", 2, None), ("2 threads, OMP_WAIT_POLICY=PASSIVE", 2, "PASSIVE"),
                                      ("1 thread", 1, None)):
            print(f"{'beside a busy core' if busy else 'idle':>18}  {name:36} {case(a.steps, threads, policy, busy):6.1f} s", flush=True)


if __name__ == "__main__":
    main()
