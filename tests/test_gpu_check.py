"""bench/gpu_check.py (`make gpu-check`) works: its --cpu --tiny mode runs the whole check on CPU with a tiny model.

The script is meant for a machine with CUDA torch and nothing of this package installed, so it runs here
isolated (`python -I`: no PYTHONPATH) from a folder outside the repository; it finds the loss in its checkout.
The trainers' stage (`--stage all`) runs in tests/test_gpu_env.py, from the wheels of `make gpu-kit` in a fresh venv.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def run(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)


def check(res, record_path: Path, impl: str):
    assert res.returncode == 0, res.stdout + res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("gpu-check OK: cpu | " + impl) and "step FRPO/GRPO" in last and "tok/s" in last \
        and "loss G=8 k=4 T=64 FRPO/GRPO" in last, last
    r = json.loads(record_path.read_text())
    assert r["impl"] == impl and r["ok"] and r["generation"]["tokens_per_s"] > 0 and r["generation"]["new_tokens"] == 8
    assert all(math.isfinite(v) for v in [*r["step"]["loss"].values(), *r["loss"]["value"].values(), r["step"]["ratio_paired"]])
    assert r["loss"]["value"]["grpo"] == pytest.approx(0.0, abs=1e-6)       # centred advantages, ratio 1: -mean(A) = 0


def test_gpu_check_runs_on_cpu_with_plain_torch(tmp_path):
    check(run(tmp_path, "--cpu", "--tiny", "--impl", "torch", "--stage", "model", "--out", "r.json"), tmp_path / "r.json", "torch")
    res = run(tmp_path, "--tiny", "--stage", "model")                   # no --cpu on a machine without CUDA: says so, exit 2
    if res.returncode != 0: assert res.returncode == 2 and "torch sees no CUDA GPU" in res.stderr


@pytest.mark.slow
def test_gpu_check_runs_on_cpu_with_transformers(tmp_path):
    check(run(tmp_path, "--cpu", "--tiny", "--stage", "model", "--out", "r.json"), tmp_path / "r.json", "transformers")
