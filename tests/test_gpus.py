"""A local sweep that shares one machine's GPUs out (`frpo-nb sweep --gpus`), on the smoke templates.

Each run gets a disjoint set of GPU ids (CUDA_VISIBLE_DEVICES, recorded in result.json) sized by its
`num_processes`, and its own accelerate port; a run starts only when its GPUs are free. Resume after a
killed sweep, failure isolation, blocked children and `status` work as without --gpus. The GPU ids need
not exist: on this CPU machine they are only numbers in CUDA_VISIBLE_DEVICES. Also: two 2-process
`accelerate launch`es on CPU at the same time, each on the port the sweep gave it (slow), and the dry runs
of the paper preset with --gpus and with --executor slurm.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from frpo_nb import paper
from frpo_nb.core import load_config
from frpo_nb.gpus import PORT_ENV
from frpo_nb.runfolder import ERROR, RESULT
from frpo_nb.cli import main
from frpo_nb.sweep import expand_grid
from frpo_nb.testing import FAILING_METHODS, kill_cli_when, run_cli, write_smoke_config
from placement import check_disjoint, max_concurrent, records

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp: Path, name: str = "gpus", **over) -> Path:
    "Three methods (the last one's train run fails) × one seed, one regime; train runs take 2 GPUs, fine-tunes 1."
    return write_smoke_config(tmp, name, **dict(methods=FAILING_METHODS, train={"num_processes": 2, "sleep_s": 2.0},
                                                finetune={"steps": 2, "num_processes": 1}) | over)


cli = run_cli


@pytest.mark.slow
def test_gpus_shared_out_with_resume_failures_and_status(tmp_path):
    cfg = write_config(tmp_path)
    jobs = expand_grid(load_config(cfg))
    ids = [j.run_id for j in jobs]
    results = tmp_path / "results"
    kill_cli_when(lambda: any((results / i / RESULT).exists() for i in ids), "sweep", cfg, "--gpus", "0-3",
                  "--no-progress", timeout=120)            # kill the sweep as soon as one run has finished
    time.sleep(1)                                   # the workers notice the sweep is gone and stop
    finished = {i: (results / i / RESULT).read_text() for i in ids if (results / i / RESULT).exists()}
    assert 0 < len(finished) < len(ids)

    res = cli("sweep", cfg, "--gpus", "0-3", "--no-progress")
    assert res.returncode == 1, res.stdout + res.stderr           # one run fails, its child is blocked
    assert f"{len(ids)} runs: {len(ids) - 2 - len(finished)} done, {len(finished)} skipped (finished earlier), 1 failed, " \
           "1 blocked" in res.stdout, res.stdout
    assert {i: (results / i / RESULT).read_text() for i in finished} == finished     # nothing redone
    bad = next(j for j in jobs if j.params.get("fail"))
    child = next(j for j in jobs if j.parent == bad.run_id)
    assert (results / bad.run_id / ERROR).is_file() and not (results / child.run_id).exists()

    recs = records(results, ids)
    trains = [r for r in recs.values() if r["kind"] == "train"]
    assert sorted(len(r["host"]["cuda_visible_devices"].split(",")) for r in recs.values()) == [1, 1, 2, 2]
    assert check_disjoint(recs) >= 1, "no two runs overlapped"
    assert max_concurrent(trains) <= 2                                             # 4 GPUs: two 2-GPU runs at most
    rc = main(["status", str(cfg)])
    assert rc == 0


def test_gpus_too_few_and_conflicting_options(tmp_path, capsys):
    cfg = write_config(tmp_path, train={"num_processes": 8})
    assert main(["sweep", str(cfg), "--gpus", "0-3"]) == 2
    assert "needs 8 GPUs (train.num_processes = 8) but --gpus gives 4 (0,1,2,3); give more GPUs or lower " \
           "train.num_processes" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--gpus", "0-x"]) == 2
    assert "--gpus: '0-x' is not a list of GPU ids" in capsys.readouterr().err
    assert main(["sweep", str(cfg), "--gpus", "0-7", "--executor", "slurm"]) == 2
    assert "--gpus is for a local sweep" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_run_stage_passes_the_port_the_sweep_gave(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, stdout, stderr, cwd, env):
        seen["cmd"] = cmd
        Path(cwd, "metrics.json").write_text("{}")
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(paper.subprocess, "run", fake_run)
    monkeypatch.setenv(PORT_ENV, "29517")
    paper.run_stage("train", {"run_dir": str(tmp_path / "run"), "num_processes": 2})
    i = seen["cmd"].index("--main_process_port")
    assert seen["cmd"][i + 1] == "29517" and seen["cmd"][i + 2:i + 4] == ["--num_processes", "2"]
    monkeypatch.delenv(PORT_ENV)
    paper.run_stage("train", {"run_dir": str(tmp_path / "run2"), "num_processes": 2})
    assert "--main_process_port" not in seen["cmd"]


PROBE = '''import json, os, sys, time
import torch, torch.distributed as dist
dist.init_process_group("gloo")
t0 = time.time()
x = torch.ones(1) * (dist.get_rank() + 1)
dist.all_reduce(x)
time.sleep(float(sys.argv[2]))
dist.barrier()
if dist.get_rank() == 0:
    json.dump({"world": dist.get_world_size(), "sum": float(x), "master_port": os.environ["MASTER_PORT"],
               "t0": t0, "t1": time.time()}, open(sys.argv[1], "w"))
dist.destroy_process_group()
'''
CPU2 = ("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\nmachine_rank: 0\n"
        "mixed_precision: 'no'\nrdzv_backend: static\nsame_network: true\nuse_cpu: false\ngpu_ids: all\n")
LAUNCH = '''import json, subprocess, sys
from pathlib import Path
from frpo_nb.core import write_json_atomic
from frpo_nb.gpus import main_process_port
port = main_process_port()
cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", cpu2, "--num_processes", str(num_processes)]
cmd += (["--main_process_port", str(port)] if port else []) + [probe, str(Path(run_dir, "probe.json")), str(sleep_s)]
done = subprocess.run(cmd, capture_output=True, text=True)
Path(run_dir, "launch.log").write_text(done.stdout + done.stderr)
assert done.returncode == 0, done.stderr[-3000:]
write_json_atomic(Path(run_dir, "metrics.json"), json.loads(Path(run_dir, "probe.json").read_text()) | {
    "port": port, "fell_back": "already in use" in done.stderr})
'''


@pytest.mark.slow
def test_two_accelerate_launches_at_once_each_on_its_own_port(tmp_path):
    """Two runs of 2 accelerate processes each (gloo on CPU) at the same time on `--gpus 0-3`: each launch
    listens on the port the sweep gave it, and neither falls back (accelerate 1.15 moves a launch whose port
    is taken to a random port, with a warning)."""
    import nbformat
    (tmp_path / "probe.py").write_text(PROBE)
    (tmp_path / "cpu2.yaml").write_text(CPU2)
    params = f'run_dir = "."\nseed = 0\nnum_processes = 2\nsleep_s = 4.0\nprobe = {str(tmp_path / "probe.py")!r}\n' \
             f'cpu2 = {str(tmp_path / "cpu2.yaml")!r}'
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell(LAUNCH)])
    nbformat.write(nb, tmp_path / "launch.ipynb")
    cfg = tmp_path / "launch.yaml"
    cfg.write_text(yaml.safe_dump(dict(name="launch", setting="safety", models=["tiny"], seeds=[0, 1],
                                       methods=[{"name": "grpo", "beta": 0.1}], train={"num_processes": 2},
                                       templates={"train": "launch.ipynb"})))
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run([PY, "-m", "frpo_nb.cli", "sweep", str(cfg), "--gpus", "0-3", "--no-progress"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    m = [r["metrics"] for r in records(tmp_path / "results", [j.run_id for j in expand_grid(load_config(cfg))]).values()]
    assert [(x["world"], x["sum"]) for x in m] == [(2, 3.0), (2, 3.0)]
    assert m[0]["t0"] < m[1]["t1"] and m[1]["t0"] < m[0]["t1"], "the two launches did not overlap"
    assert [x["master_port"] for x in m] == [str(x["port"]) for x in m] and m[0]["port"] != m[1]["port"]
    assert not any(x["fell_back"] for x in m)


def test_dry_runs_of_the_paper_preset(capsys):
    "What the paper preset's runs would get: GPUs and ports with --gpus 0-7, the sbatch request with --executor slurm."
    cfg = str(ROOT / "configs" / "paper-math-qwen.yaml")
    results = ["--results", "/nonexistent/frpo-dry-run"]
    assert main(["sweep", cfg, "--gpus", "0-7", "--dry-run", *results]) == 0
    out = capsys.readouterr().out.splitlines()
    train = [l for l in out if l.split()[:2] == ["run", "train"]]   # run lines, not the checkpoints line
    assert len(train) == 8 and all("gpus 0,1,2,3,4,5,6,7 port 295" in l for l in train), out[:3]
    evals = [l for l in out if l.split()[:2] == ["run", "evaluate"]]
    assert len(evals) == 16 and all(len(l.split("gpus ")[1].split(" port")[0].split(",")) == 4 for l in evals)  # vLLM's 4
    assert main(["sweep", cfg, "--executor", "slurm", "--dry-run", *results]) == 0
    out = capsys.readouterr().out.splitlines()
    train = [l for l in out if l.split()[:2] == ["run", "train"]]   # run lines, not the checkpoints line
    assert all("--gpus-per-node=8 --cpus-per-task=64 --time=1440" in l for l in train), train[:2]
    assert "sbatch 1, array of 8 (at most 4 at once), task 0" in train[0]
    ft = [l for l in out if l.split()[:2] == ["run", "finetune"]]
    assert all("after sbatch 1 task" in l for l in ft) and len(ft) == 8
