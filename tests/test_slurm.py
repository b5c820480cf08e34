"""The Slurm backend (`frpo-nb sweep --executor slurm`) against a real one-node Slurm cluster.

`tests/slurm/slurm-up.sh` starts munge, slurmctld and slurmd from Debian's packages (Slurm 22.05) under a
temporary folder, with 8 fake GPUs (character devices: Slurm sets CUDA_VISIBLE_DEVICES for them) and no
accounting (`sacct` fails, as on many small clusters); `slurm-down.sh` stops the daemons by the PIDs it
recorded. The tests skip, saying why, where the daemons cannot start (packages missing, not root); `.ci/run`
installs the packages first. Through Slurm, on the smoke templates: disjoint CUDA_VISIBLE_DEVICES for
runs that overlap, job arrays throttled to `array_parallelism`, a failing parent blocking its child, a run
that hits its time limit reported as such and resumed with --retry-failed, and a driver killed mid-sweep
whose rerun reattaches: nothing redone, nothing submitted twice.
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from frpo_nb.core import load_config
from frpo_nb.runfolder import ERROR, RESULT, SLURM
from frpo_nb.cli import main
from frpo_nb.slurm import sweep_status_slurm
from frpo_nb.sweep import expand_grid
from frpo_nb.testing import FAILING_METHODS, kill_cli_when, write_smoke_config
from placement import check_disjoint, max_concurrent, records

PY = sys.executable
SCRIPTS = Path(__file__).resolve().parent / "slurm"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    "A running one-node cluster (SLURM_CONF set for this process and its children); stopped afterwards."
    d = tmp_path_factory.mktemp("slurm")
    env = os.environ | {"D": str(d), "FAKE_GPUS": "8", "CPUS": "8"}
    t0 = time.time()
    up = subprocess.run(["bash", str(SCRIPTS / "slurm-up.sh")], env=env, capture_output=True, text=True, timeout=180)
    if up.returncode != 0:
        subprocess.run(["bash", str(SCRIPTS / "slurm-down.sh")], env=env, capture_output=True, timeout=60)
        pytest.skip(f"no Slurm cluster to test against: tests/slurm/slurm-up.sh exited {up.returncode}: "
                    f"{(up.stderr or up.stdout).strip()[-300:]}")
    print(f"slurm up in {time.time() - t0:.1f} s: {up.stdout.strip()}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(d / "slurm.conf")
    try: yield d
    finally:
        if old is None: os.environ.pop("SLURM_CONF", None)
        else: os.environ["SLURM_CONF"] = old
        down = subprocess.run(["bash", str(SCRIPTS / "slurm-down.sh")], env=env, capture_output=True, text=True, timeout=60)
        print(down.stdout)


def write_config(tmp: Path, name: str, **over) -> Path:
    "Three methods (the last one's train run fails) × two seeds, one regime, on the Slurm executor."
    return write_smoke_config(tmp, name, **dict(
        seeds=[0, 1], methods=FAILING_METHODS, train={"num_processes": 2, "sleep_s": 4.0},
        finetune={"steps": 2, "num_processes": 1}, executor="slurm",
        slurm={"cpus_per_gpu": 1, "cpus": 1, "array_parallelism": 2, "time": 10, "poll_s": 1}) | over)


def squeue(job_ids) -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"],
                         capture_output=True, text=True).stdout
    return {l.split("|")[0]: l.split("|", 1)[1] for l in out.splitlines() if l}


@pytest.mark.slow
def test_slurm_sweep_killed_driver_reattaches(slurm, tmp_path, capsys):
    cfg = write_config(tmp_path, "sl")
    jobs = expand_grid(load_config(cfg))
    ids, results = [j.run_id for j in jobs], tmp_path / "results"
    bad = [j for j in jobs if j.params.get("fail")]
    blocked = [j for j in jobs if j.parent in {b.run_id for b in bad}]
    t0 = time.time()
    kill_cli_when(lambda: all((results / i / SLURM).is_file() for i in ids) and any((results / i / RESULT).is_file() for i in ids),
                  "sweep", cfg, "--no-progress", timeout=180, poll=0.1)   # kill the driver once all is submitted and one run finished
    job_ids = {i: json.loads((results / i / SLURM).read_text())["job_id"] for i in ids}
    finished = {i: (results / i / RESULT).read_text() for i in ids if (results / i / RESULT).is_file()}
    live = {k: v for k, v in squeue(list(job_ids.values())).items() if v.split("|")[0] in ("PENDING", "RUNNING")}
    assert live, "every job had ended before the driver was killed: nothing to reattach to"
    rows = {r["run_id"]: r["status"] for r in sweep_status_slurm(load_config(cfg))}   # status from Slurm, no driver
    assert {"queued", "running"} & set(rows.values()), rows

    assert main(["sweep", str(cfg), "--no-progress"]) == 1                   # reattach; 2 runs fail, 2 are blocked
    out = capsys.readouterr().out
    wall = time.time() - t0
    m = re.search(r"runs: (\d+) done, (\d+) skipped \(finished earlier\), 2 failed, 2 blocked", out)
    assert m, out                                                            # the reattached sweep's summary, as printed
    done, skipped = map(int, m.groups())
    assert done + skipped == len(ids) - 4 and skipped >= len(finished) and done >= 1, out   # some ended before the rerun
    assert {i: json.loads((results / i / SLURM).read_text())["job_id"] for i in ids} == job_ids    # nothing resubmitted
    assert len(list((results / "_slurm").glob("*_submitted.pkl"))) == len(ids)                 # one submission per run
    assert {i: (results / i / RESULT).read_text() for i in finished} == finished              # nothing redone

    recs = records(results, ids)
    assert len(recs) == len(ids) - 4
    assert all(r["host"]["slurm_job_id"] for r in recs.values())
    assert sorted({len(r["host"]["cuda_visible_devices"].split(",")) for r in recs.values()}) == [1, 2]
    assert check_disjoint(recs) >= 2, "no runs overlapped"
    trains = [r for r in recs.values() if r["kind"] == "train"]
    assert max_concurrent(trains) == 2                         # 4 trains fit (8 GPUs, 8 CPUs): the array's %2 binds
    for b in bad: assert json.loads((results / b.run_id / ERROR).read_text())["error"]["type"] == "ValueError"
    states = squeue([job_ids[j.run_id] for j in blocked])
    for j in blocked:
        assert not (results / j.run_id / RESULT).exists() and not (results / j.run_id / ERROR).exists()
        assert states[job_ids[j.run_id]].startswith("CANCELLED|Dependency"), states   # by Slurm, or by the driver first
    rows = {r["run_id"]: r["status"] for r in sweep_status_slurm(load_config(cfg))}
    assert [rows[j.run_id] for j in blocked] == ["blocked", "blocked"] and [rows[b.run_id] for b in bad] == ["failed"] * 2
    print(f"slurm sweep of {len(ids)} runs, driver killed and rerun: {wall:.1f} s")


@pytest.mark.slow
def test_slurm_time_limit_is_reported_and_retried(slurm, tmp_path, capsys):
    "A 40-s run under a 1-minute limit warned 30 s ahead: recorded as SlurmTimeLimit, shown as timeout; --retry-failed with 5 minutes finishes it."
    over = dict(methods=[{"name": "grpo", "beta": 0.1}], seeds=[0], regimes=[], train={"num_processes": 1, "sleep_s": 40.0})
    cfg = write_config(tmp_path, "tl", **over, slurm={"time": 1, "signal_delay_s": 30, "poll_s": 1, "cpus": 1, "cpus_per_gpu": 1,
                                                "max_requeues": 0})   # not requeued: it times out
    (rid,) = [j.run_id for j in expand_grid(load_config(cfg))]
    results = tmp_path / "results"
    assert main(["sweep", str(cfg), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out and "SlurmTimeLimit: the run reached its Slurm time limit (1 min: slurm.time in" in out, out
    assert [r["status"] for r in sweep_status_slurm(load_config(cfg))] == ["timeout"]
    assert main(["status", str(cfg)]) == 0 and "timeout" in capsys.readouterr().out
    assert main(["sweep", str(cfg), "--no-progress"]) == 1            # without --retry-failed it stays failed
    capsys.readouterr()
    first = json.loads((results / rid / SLURM).read_text())["job_id"]
    err = json.loads((results / rid / ERROR).read_text())
    print(f"time limit recorded by {'the run (Slurm warning)' if 'cause' in err['error'] else 'the driver (job state)'}; "
          f"job {first}: {squeue([first]).get(first, 'purged')}")
    cfg = write_config(tmp_path, "tl", **over, slurm={"time": 5, "signal_delay_s": 30, "poll_s": 1, "cpus": 1, "cpus_per_gpu": 1,
                                                "max_requeues": 0})
    assert main(["sweep", str(cfg), "--no-progress", "--retry-failed"]) == 0
    assert "1 runs: 1 done" in capsys.readouterr().out
    assert json.loads((results / rid / SLURM).read_text())["job_id"] != first
    assert json.loads((results / rid / RESULT).read_text())["metrics"]["value"] == 1.0


def test_slurm_without_submitit_or_sbatch_says_what_to_install(tmp_path, capsys, monkeypatch):
    "No cluster needed: an executor that cannot submit fails before anything is created, naming the fix."
    cfg = write_config(tmp_path, "nosb")
    monkeypatch.setitem(sys.modules, "submitit", None)                 # as if not installed
    assert main(["sweep", str(cfg), "--no-progress"]) == 2
    assert "executor slurm needs submitit: pip install -e '.[slurm]'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


# A train template that works in `steps` steps of `step_s` seconds, saving a checkpoint (state + RNG, marked complete the
# way 00c_checkpoints marks the Trainer's) every `every` steps and resuming from the newest complete one: the plumbing of
# a requeued run (its folder kept, the job requeued, the run resumed) without a model. Each attempt's first step goes to
# trainer/attempts.txt. (That the HF Trainer's resume is exact is tests/test_checkpoints.py's job.)
STEPS_PARAMS = 'run_dir = "."\nseed = 0\nsteps = 20\nstep_s = 5.0\nevery = 2\nnum_processes = 1'
STEPS_BODY = '''import json, random, shutil, time
from pathlib import Path
from frpo_nb.checkpoints import CHECKPOINTS, MARKER, checkpoint_step, checkpoints, latest_checkpoint, remove_checkpoints
from frpo_nb.core import write_json_atomic
folder = Path(run_dir) / CHECKPOINTS
last = latest_checkpoint(folder, clean=True)
start, rng, x = checkpoint_step(last) if last else 0, random.Random(seed), seed
if last:
    saved = json.loads((last / "state.json").read_text())
    x, rng_state = saved["x"], saved["rng"]
    rng.setstate((rng_state[0], tuple(rng_state[1]), rng_state[2]))
folder.mkdir(parents=True, exist_ok=True)
with open(folder / "attempts.txt", "a") as f: f.write(f"{start}\\n")
for step in range(start + 1, steps + 1):
    time.sleep(step_s)
    x = (x * 31 + rng.randrange(1000)) % 1000003
    if step % every == 0:
        p = folder / f"checkpoint-{step}"
        p.mkdir(exist_ok=True)
        write_json_atomic(p / "state.json", {"x": x, "rng": rng.getstate()})
        write_json_atomic(p / "trainer_state.json", {"global_step": step})
        write_json_atomic(p / MARKER, {"step": step})
        for old in checkpoints(folder)[:-2]: shutil.rmtree(old)
write_json_atomic(Path(run_dir, "metrics.json"), {"x": x, "steps": steps} | ({"resumed_from": start} if start else {}))
remove_checkpoints(folder)'''


def write_steps_config(tmp: Path, name: str, **over) -> Path:
    import nbformat
    (tmp / "tpl").mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(STEPS_PARAMS, metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell(STEPS_BODY)])
    nbformat.write(nb, tmp / "tpl" / "steps_train.ipynb")
    return write_smoke_config(tmp, name, **dict(methods=[{"name": "grpo", "beta": 0.1}], seeds=[0], regimes=[],
                                                templates={"train": "tpl/steps_train.ipynb"}) | over)


@pytest.mark.slow
def test_slurm_requeue_resumes_from_checkpoint(slurm, tmp_path, capsys):
    """A run that needs 100 s of work (and ≈ 12 s to start each attempt) under a 1-minute limit, warned 15 s ahead:
    `scontrol requeue` of the running job, then the time-limit warnings, requeue it (the same job id; Slurm restarts a
    requeued job ≈ 30 s later); each attempt resumes from the newest checkpoint, and the run ends with the metrics of
    the same run uninterrupted (the template with no sleeping, run locally)."""
    plain = write_steps_config(tmp_path / "plain", "plain", train={"step_s": 0.0})
    assert main(["sweep", str(plain), "--no-progress"]) == 0
    (want,) = [json.loads(p.read_text())["metrics"] for p in (tmp_path / "plain" / "results").glob("*/result.json")]
    cfg = write_steps_config(tmp_path, "rq", train={"step_s": 5.0}, executor="slurm",
                             slurm={"time": 1, "signal_delay_s": 15, "max_requeues": 8, "poll_s": 1, "cpus": 1, "cpus_per_gpu": 1})
    (rid,) = [j.run_id for j in expand_grid(load_config(cfg))]
    run_dir = tmp_path / "results" / rid
    t0 = time.time()
    driver = subprocess.Popen([PY, "-m", "frpo_nb.cli", "sweep", str(cfg), "--no-progress"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        while not (run_dir / "trainer" / "checkpoint-2" / "complete.json").is_file():
            assert driver.poll() is None and time.time() - t0 < 180, driver.communicate()[0][-3000:]
            time.sleep(0.2)
        job_id = json.loads((run_dir / SLURM).read_text())["job_id"]
        subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True, timeout=60)   # as an admin might
        out = driver.communicate(timeout=900)[0]
    finally:
        if driver.poll() is None: driver.kill()
    wall = time.time() - t0
    assert driver.returncode == 0, out[-3000:]
    got = json.loads((run_dir / RESULT).read_text())["metrics"]
    starts = [int(s) for s in (run_dir / "trainer" / "attempts.txt").read_text().split()]
    record = json.loads((run_dir / SLURM).read_text())
    assert record["job_id"] == job_id and len(list((tmp_path / "results" / "_slurm").glob("*_submitted.pkl"))) == 1
    assert starts[0] == 0 and starts[1] >= 2 and starts == sorted(starts) and len(starts) >= 3, starts   # never from 0 again
    assert record["requeues"] == len(starts) - 1
    assert got.pop("resumed_from") == starts[-1] and got == want                # the metrics of the uninterrupted run
    assert not list((run_dir / "trainer").glob("checkpoint-*"))                 # removed once done
    capsys.readouterr()
    assert main(["status", str(cfg)]) == 0
    status = capsys.readouterr().out
    assert f"[resumed from step {starts[-1]}, requeued ({len(starts) - 1})]" in status, status
    with capsys.disabled():
        print(f"\nrequeued run: attempts starting at steps {starts}, {record['requeues']} requeues, {wall:.0f} s; status:\n{status}")
