"""Runs that survive being killed (issue 23): a tiny train run and its fine-tuning, each SIGKILLed (the sweep, its
kernel, everything: as a node failure would) after a checkpoint, then resumed by rerunning the sweep, end with the
same weights, the same logged rewards, the same curve and the same result.json metrics as the same runs never
interrupted — bit for bit, on CPU. The checkpoint logic itself (completion marker, half-written checkpoint skipped,
a GRPO run resumed in its second epoch) is tested in nbs/00c_checkpoints.ipynb; the Slurm requeue in test_slurm.py.
"""
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from frpo_nb.checkpoints import CHECKPOINTS, MARKER
from frpo_nb.cli import main
from frpo_nb.core import load_config, read_jsonl
from frpo_nb.runfolder import RESULT
from frpo_nb.sweep import expand_grid

ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp: Path, name: str, **train) -> Path:
    "One FRPO run of the micro model, 20 RL steps of 32 prompts (an epoch is 9 steps: the checkpoint at step 10 is in the second), then 12 SFT steps."
    cfg = dict(name=name, setting="safety", models=["micro"], seeds=[0], methods=[{"name": "frpo", "lamb": 0.5, "beta": 0.002}],
               regimes=["sft-alpaca"],
               train=dict(max_steps=20, warmup_steps=30, per_device_train_batch_size=64, num_generations=2,
                          max_completion_length=12, eval_prompts=8, eval_samples=2, checkpoint_every=10,
                          base_cache=str(tmp / "bases")) | train,
               finetune=dict(max_steps=12, every=3, batch_size=8, eval_prompts=8, eval_samples=2, checkpoint_every=6),
               templates={"train": str(ROOT / "nbs/experiments/train.ipynb"), "finetune": str(ROOT / "nbs/experiments/finetune.ipynb")},
               results_dir=str(tmp / f"results-{name}"))
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def kill_all_when(ready, *args, timeout: float = 600) -> None:
    "Start `frpo-nb ARGS` and SIGKILL it and every process under it (papermill's kernel too) once `ready()`."
    proc = subprocess.Popen([sys.executable, "-m", "frpo_nb.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while not ready():
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
            time.sleep(0.02)
        procs = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
        for p in procs:
            try: p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess: pass
        psutil.wait_procs(procs, timeout=30)
    finally:
        if proc.poll() is None: proc.kill()
        proc.communicate()


def digest(path: Path) -> str: return hashlib.sha256(path.read_bytes()).hexdigest()


def complete(run_dir: Path, step: int):
    return lambda: (run_dir / CHECKPOINTS / f"checkpoint-{step}" / MARKER).is_file()


@pytest.mark.slow
def test_killed_runs_resume_bit_for_bit(tmp_path, capsys):
    plain, killed = write_config(tmp_path, "plain"), write_config(tmp_path, "killed")
    t0 = time.time()
    uninterrupted = subprocess.Popen([sys.executable, "-m", "frpo_nb.cli", "sweep", str(plain), "--no-progress"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)   # meanwhile, on the other core
    train, ft = expand_grid(load_config(killed))
    assert [j.run_id for j in expand_grid(load_config(plain))] == [train.run_id, ft.run_id]   # results_dir is no parameter
    a, b = tmp_path / "results-plain", tmp_path / "results-killed"

    kill_all_when(complete(b / train.run_id, 10), "sweep", killed, "--no-progress")        # in the train run's 2nd epoch
    assert not (b / train.run_id / RESULT).exists(), "the train run finished before the kill: nothing was resumed"
    kill_all_when(complete(b / ft.run_id, 6), "sweep", killed, "--no-progress")            # in the fine-tuning
    assert (b / train.run_id / RESULT).exists() and not (b / ft.run_id / RESULT).exists()
    capsys.readouterr()
    assert main(["sweep", str(killed), "--no-progress"]) == 0
    assert main(["status", str(killed)]) == 0
    status = capsys.readouterr().out
    out = uninterrupted.communicate(timeout=600)[0]
    assert uninterrupted.returncode == 0, out[-3000:]

    for run, step in ((train, 10), (ft, 6)):
        ra, rb = (json.loads((d / run.run_id / RESULT).read_text()) for d in (a, b))
        assert rb["metrics"].pop("resumed_from") == step and "resumed_from" not in ra["metrics"]
        for r in (ra, rb): r["metrics"].get("effective_config", {}).pop("output_dir", None)  # the results folder's path
        assert ra["metrics"] == rb["metrics"], run.kind                                   # every metric, bit for bit
        assert digest(a / run.run_id / "policy/model.safetensors") == digest(b / run.run_id / "policy/model.safetensors")
        assert not list((b / run.run_id / CHECKPOINTS).glob("checkpoint-*"))              # removed once done
        assert f"resumed from step {step}" in status
        nb = (b / run.run_id / f"{run.kind}.ipynb").read_text()
        assert f"resuming from checkpoint-{step} (step {step})" in nb and f"'resumed_from': {step}" in nb   # the notebook says it
    logged = [[{k: v for k, v in r.items() if k != "step_time"} for r in read_jsonl(d / train.run_id / "train_log.jsonl")]
              for d in (a, b)]                                                       # step_time: a timing
    assert logged[0] == logged[1] and [r["step"] for r in logged[0]] == [10, 20]
    curve = read_jsonl(b / ft.run_id / "curve.jsonl")
    assert [r["step"] for r in curve] == [0, 3, 6, 9, 12]                                  # no point twice, none missing
    assert read_jsonl(a / ft.run_id / "curve.jsonl") == curve
    with capsys.disabled(): print(f"\nboth sweeps (one killed twice and resumed): {time.time() - t0:.1f} s; status:\n{status}")
