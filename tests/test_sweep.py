"""The sweep as a user runs it: the `frpo-nb` CLI (`python -m frpo_nb.cli`) on the smoke templates.

End to end through papermill, resume after a kill or SIGTERM (one worker and two), failure isolation
and --retry-failed, config validation before anything runs, the status table, --workers 2 against
--workers 1, figures and `run`. Each papermill run starts a kernel (~0.6 s here); tests over ~10 s are
marked slow.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from frpo_nb.core import load_config
from frpo_nb.provenance import cpu_state
from frpo_nb.runfolder import ERROR, RESULT
from frpo_nb.cli import main
from frpo_nb.sweep import expand_grid, sweep_lock
from frpo_nb.testing import run_cli, write_smoke_config

PY = sys.executable
VOLATILE = {"timings", "host", "params", "files", "git", "versions", "config", "template"}  # differ between two sweeps


def write_config(tmp: Path, name: str = "micro", **over) -> Path:
    "A micro config on smoke templates in tmp/tpl: grpo + frpo train runs × one regime, one seed."
    return write_smoke_config(tmp, name, **{"templates": {"train": "tpl/smoke_train.ipynb", "finetune": "tpl/smoke_finetune.ipynb",
                                                         "evaluate": "tpl/smoke_evaluate.ipynb"}, "evaluate_after": []} | over)


cli = run_cli


def run_main(capsys, *args) -> tuple[int, str, str]:
    "`frpo-nb ARGS` in this process (no interpreter start-up): exit status, stdout, stderr."
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_ids(cfg_path: Path) -> list[str]:
    return [j.run_id for j in expand_grid(load_config(cfg_path))]


def read(results: Path, rid: str, name: str = RESULT) -> dict:
    return json.loads((results / rid / name).read_text())


def live_processes() -> dict[int, int]:
    "pid -> parent pid of every live (non-zombie) process, from /proc."
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try: rest = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError): continue
        if rest[0] != "Z": out[int(stat.parent.name)] = int(rest[1])
    return out


def descendants(pid: int) -> set[int]:
    "Live processes below `pid` (kernels included: they run in their own session but keep their parent)."
    tree, found, todo = live_processes(), set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in tree.items() if pp == p}
        todo += list(kids - found)
        found |= kids
    return found


def test_end_to_end_cli_and_status(tmp_path):
    cfg = write_config(tmp_path)
    res = cli("sweep", cfg, "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 runs: 4 done, 0 skipped" in res.stdout
    ids = run_ids(cfg)
    results = tmp_path / "results"
    recs = [read(results, rid) for rid in ids]
    assert [r["status"] for r in recs] == ["done"] * 4
    assert [r["kind"] for r in recs] == ["train", "finetune"] * 2
    train = recs[2]
    assert train["params"]["lamb"] == 0.5 and train["params"]["beta"] == 0.002 and train["seed"] == 0
    assert train["params"]["run_dir"] == str(results / ids[2]) and Path(train["params"]["run_dir"]).is_absolute()
    assert train["metrics"] == {"value": 2.0, "seed": 0, "lamb": 0.5}
    assert {"python", "torch", "trl", "transformers", "accelerate", "peft", "datasets", "papermill", "frpo_nb"} <= set(train["versions"])
    assert train["versions"]["torch"] and train["versions"]["papermill"] == "2.7.0"
    assert set(train["git"]) == {"commit", "dirty"} and train["config"]["file"] == str(cfg.resolve())
    ft = recs[3]
    assert ft["parent"] == ids[2] and ft["metrics"]["start"] == 2.0 and "curve.jsonl" in ft["files"]
    assert [json.loads(l)["step"] for l in (results / ids[3] / "curve.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert (results / ids[3] / "finetune.ipynb").exists()

    st = cli("status", cfg)
    assert st.returncode == 0, st.stderr
    lines = st.stdout.splitlines()
    assert lines[-1] == "4 runs: 4 done"
    assert any(ids[2] in l and "done" in l and "value=2" in l for l in lines)
    assert any(ids[3] in l and "final=1" in l for l in lines)


def test_config_errors_run_nothing(tmp_path, capsys):
    "A misspelled key, λ <= 0 or an undeclared template parameter stops sweep, dry run and run before any folder exists."
    cases = {"seed": ("unknown key 'seed'; did you mean 'seeds'?", {"seed": [1]}),
             "lamb": ("methods[0].lamb must be a finite number > 0", {"methods": [{"name": "frpo", "lamb": 0.0, "beta": 0.1}]}),
             "tparam": ("methods[0].train.valu is not a parameter of smoke_train.ipynb (its parameters cell declares "
                        "run_dir, seed, lamb, value, fail, sleep_s, num_processes); did you mean 'value'?",
                        {"methods": [{"name": "frpo", "lamb": 1, "beta": 0.1, "train": {"valu": 3}}]})}
    for name, (msg, over) in cases.items():
        cfg = write_config(tmp_path, name=name, results_dir=f"res-{name}", **over)
        for cmd in (["sweep", str(cfg)], ["sweep", str(cfg), "--dry-run"], ["run", str(cfg)]):
            assert main(cmd) == 2, (name, cmd)
            assert msg in capsys.readouterr().err, name
        assert not (tmp_path / f"res-{name}").exists(), name


def test_dry_run_and_lock(tmp_path, capsys):
    cfg = write_config(tmp_path, results_dir="res")
    assert main(["sweep", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("4 runs: 4 run") and not (tmp_path / "res").exists()
    (tmp_path / "res").mkdir()
    with sweep_lock(tmp_path / "res"):
        assert main(["sweep", str(cfg), "--no-progress"]) == 2
        assert "another sweep (pid" in capsys.readouterr().err
        assert main(["status", str(cfg)]) == 0            # status reads while a sweep holds the folder
    assert [p.name for p in (tmp_path / "res").iterdir()] == [".sweep.lock"]   # no run folder was made


def test_help_everywhere(capsys):
    top = cli("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("run", "sweep", "figures", "status"))
    for cmd in ("run", "sweep", "figures", "status"):
        with pytest.raises(SystemExit) as e: main([cmd, "--help"])
        assert e.value.code == 0
        assert f"usage: frpo-nb {cmd}" in capsys.readouterr().out
    for argv in ([], ["sweep"], ["sweep", "x.yaml", "--workers", "0"], ["status"]):
        with pytest.raises(SystemExit) as e: main(argv)
        assert e.value.code == 2, argv


def test_failure_isolation_and_retry(tmp_path, capsys):
    fail = {"name": "frpo", "lamb": 2.0, "beta": 0.0, "train": {"fail": True}}
    cfg = write_config(tmp_path, methods=[{"name": "grpo", "beta": 0.1}, fail,
                                          {"name": "frpo", "lamb": 0.5, "beta": 0.002}])
    ids, results = run_ids(cfg), tmp_path / "results"
    rc, out, err = run_main(capsys, "sweep", cfg, "--no-progress")
    assert rc == 1, out + err
    assert "6 runs: 4 done, 0 skipped (finished earlier), 1 failed, 1 blocked" in out
    assert f"FAILED  {ids[2]}: ValueError: smoke template asked to fail" in out and f"BLOCKED {ids[3]}" in out
    err = read(results, ids[2], ERROR)
    assert err["status"] == "failed" and err["error"]["type"] == "ValueError" and "fail=True" in err["error"]["traceback"]
    assert (results / ids[2] / "train.ipynb").exists() and not (results / ids[2] / RESULT).exists()
    assert not (results / ids[3]).exists()
    assert [read(results, i)["status"] for i in ids[:2] + ids[4:]] == ["done"] * 4
    done_mtimes = {i: (results / i / RESULT).stat().st_mtime_ns for i in ids[:2] + ids[4:]}
    err_mtime = (results / ids[2] / ERROR).stat().st_mtime_ns

    rc, out, _ = run_main(capsys, "sweep", cfg, "--no-progress")      # failed runs stay failed without --retry-failed
    assert rc == 1 and "4 skipped (finished earlier), 1 failed, 1 blocked" in out
    assert (results / ids[2] / ERROR).stat().st_mtime_ns == err_mtime
    rc, out, _ = run_main(capsys, "sweep", cfg, "--no-progress", "--retry-failed")
    assert rc == 1 and "0 done, 4 skipped (finished earlier), 1 failed" in out
    assert (results / ids[2] / ERROR).stat().st_mtime_ns != err_mtime
    assert {i: (results / i / RESULT).stat().st_mtime_ns for i in done_mtimes} == done_mtimes

    st = run_main(capsys, "status", cfg)[1].splitlines()
    assert st[-1] == "6 runs: 4 done, 1 failed, 1 blocked"
    assert any(ids[2] in l and "failed" in l and "asked to fail" in l for l in st)


@pytest.mark.slow
@pytest.mark.parametrize("sig,workers", [(signal.SIGKILL, 1), (signal.SIGKILL, 2), (signal.SIGTERM, 1), (signal.SIGTERM, 2)],
                         ids=["kill-1worker", "kill-2workers", "term-1worker", "term-2workers"])
def test_resume_after_interrupt(tmp_path, sig, workers):
    """Interrupt a sweep after its first result: nothing half-done reads as finished, no process is left
    behind, and the rerun completes without redoing the finished run."""
    cfg = write_config(tmp_path, regimes=[], methods=[{"name": "grpo", "beta": 0.1},
                       {"name": "frpo", "lamb": 0.5, "beta": 0.002, "train": {"sleep_s": 6.0}}])
    first, slow = run_ids(cfg)
    results = tmp_path / "results"
    proc = subprocess.Popen([PY, "-m", "frpo_nb.cli", "sweep", str(cfg), "--no-progress", "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (results / first / RESULT).exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "first run did not finish"
            time.sleep(0.05)
        need = 1 if workers == 1 else 3                    # the kernel; or the fork server, a worker, its kernel
        while len(below := descendants(proc.pid)) < need:  # the slow run has started its kernel
            assert time.time() < deadline, below
            time.sleep(0.05)
        assert not (results / slow / RESULT).exists()
        proc.send_signal(sig)                              # the sweep process only; its children must follow
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None: os.killpg(proc.pid, signal.SIGKILL)
    if sig == signal.SIGTERM: assert proc.returncode == 130 and "interrupted" in err, err
    deadline = time.time() + 20
    while below & set(live_processes()) and time.time() < deadline: time.sleep(0.2)
    assert not below & set(live_processes()), "workers or kernels outlived the sweep"
    assert not (results / slow / RESULT).exists() and not (results / slow / ERROR).exists()

    before = ((results / first / RESULT).stat().st_mtime_ns, (results / first / RESULT).read_text())
    res = cli("sweep", cfg, "--no-progress", "--workers", workers)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 runs: 1 done, 1 skipped" in res.stdout
    assert ((results / first / RESULT).stat().st_mtime_ns, (results / first / RESULT).read_text()) == before
    assert read(results, slow)["metrics"]["value"] == 1.0


@pytest.mark.slow
def test_two_workers_match_one(tmp_path):
    cfg = write_config(tmp_path, evaluate_after=["finetune"], evaluate={"scale": 3.0})
    ids = run_ids(cfg)
    for w in (1, 2):
        res = cli("sweep", cfg, "--no-progress", "--workers", w, "--results", tmp_path / f"w{w}")
        assert res.returncode == 0, res.stdout + res.stderr
    one = {i: read(tmp_path / "w1", i) for i in ids}
    two = {i: read(tmp_path / "w2", i) for i in ids}
    strip = lambda r: {k: v for k, v in r.items() if k not in VOLATILE}
    params = lambda r: {k: v for k, v in r["params"].items() if k not in ("run_dir", "parent_dir")}
    assert {i: strip(r) for i, r in one.items()} == {i: strip(r) for i, r in two.items()}
    assert {i: params(r) for i, r in one.items()} == {i: params(r) for i, r in two.items()}
    assert [two[i]["metrics"].get("score") for i in ids if two[i]["kind"] == "evaluate"] == [1.5, 3.0]
    span = {i: (r["timings"]["started"], r["timings"]["finished"]) for i, r in two.items()}
    for i, r in two.items():                              # a run starts after the run it continues finished
        if r["parent"]: assert span[r["parent"]][1] <= span[i][0], (i, span)
    cores = os.cpu_count()
    assert {r["host"]["omp_num_threads"] for r in two.values()} == {os.environ.get("OMP_NUM_THREADS", str(max(1, cores // 2)))}
    assert [r["host"]["cpu"] for r in two.values()] == [cpu_state()] * len(two)   # the CPU, which can change the last bits
    trains = [i for i in ids if two[i]["kind"] == "train"]
    assert span[trains[1]][0] < span[trains[0]][1], "two workers: the two train runs should overlap"


def test_figures_and_run(tmp_path, capsys):
    cfg = write_config(tmp_path, regimes=[])
    figs = tmp_path / "nbs" / "figures"
    figs.mkdir(parents=True)
    (figs / "fig_smoke.ipynb").write_bytes((tmp_path / "tpl" / "smoke_figure.ipynb").read_bytes())
    rc, out, err = run_main(capsys, "run", cfg, "--no-progress")   # sweep, then the figures of cfg's root (tmp_path)
    assert rc == 0, out + err
    assert "figures: 1/1 notebooks done" in out
    assert sorted(json.loads((tmp_path / "results/_figures/smoke.json").read_text())) == sorted(run_ids(cfg))
    assert (tmp_path / "results/_figures/fig_smoke.ipynb").exists()

    rc, _, err = run_main(capsys, "figures", "--results", tmp_path / "results", "--notebooks", tmp_path / "none")
    assert rc == 2 and "no figure notebooks" in err          # a named folder without notebooks is an error, not "nothing to do"
    (figs / "fig_broken.ipynb").write_text((figs / "fig_smoke.ipynb").read_text().replace("json.dumps(done)", "json.dumps(undefined_name)"))
    rc, out, _ = run_main(capsys, "figures", "--results", tmp_path / "results", "--notebooks", figs)
    assert rc == 1 and "FAILED fig_broken.ipynb: NameError" in out and "ok     fig_smoke.ipynb" in out


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("field,bad,message", [
    ("regimes", ["sft-alpacca"], "regimes[0]: 'sft-alpacca' is not a regime finetune.ipynb knows"),
    ("models", ["tinyy"], "models[0]: 'tinyy' is not a model train.ipynb knows"),
    ("train", {"max_steps": "60"}, "train.max_steps is '60' (str) but train.ipynb expects a number"),
    ("seed", [0], "unknown key 'seed'; did you mean 'seeds'?"),
    ("results_dir", "afile/sub", "is a file; choose another folder"),
])
def test_dry_run_names_each_bad_input_of_a_real_config(tmp_path, capsys, field, bad, message):
    "Typos in the demo config fail at --dry-run, before any run, with the config file, the field and the fix."
    cfg = yaml.safe_load((ROOT / "configs" / "tiny-demo.yaml").read_text())
    cfg["templates"] = {k: str(ROOT / v) for k, v in cfg["templates"].items()}
    cfg["results_dir"] = str(tmp_path / "results")
    (tmp_path / "afile").write_text("not a folder")
    cfg[field] = str(tmp_path / bad) if field == "results_dir" else bad
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rc, out, err = run_main(capsys, "sweep", path, "--dry-run")
    assert rc == 2 and message in err and "typo.yaml" in err, err
    assert not (tmp_path / "results").exists()
    if field == "regimes": assert "did you mean 'sft-alpaca'?" in err


def test_a_folder_is_not_a_config(capsys):
    rc, _, err = run_main(capsys, "sweep", ROOT / "configs", "--dry-run")
    assert rc == 2 and "is a folder, not a config file" in err


def test_dry_run_checks_a_preregistered_analysis(tmp_path, capsys):
    "A config's analysis: block (the pre-registration) is checked at --dry-run; a typo in it names the block."
    cfg = yaml.safe_load((ROOT / "configs" / "tiny-demo.yaml").read_text())
    cfg["templates"] = {k: str(ROOT / v) for k, v in cfg["templates"].items()}
    cfg["results_dir"] = str(tmp_path / "results")
    cfg["analysis"] = {"primary": {"metric": "refusal_prob", "regime": "sft-alpaca", "method": "frpo-lam0.5"}, "alpha": 0.05}
    path = tmp_path / "prereg.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rc, out, err = run_main(capsys, "sweep", path, "--dry-run")
    assert rc == 0, err
    cfg["analysis"]["alpah"] = cfg["analysis"].pop("alpha")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rc, out, err = run_main(capsys, "sweep", path, "--dry-run")
    assert rc == 2 and "analysis:" in err and "alpah" in err, err


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("tiny-*.yaml")))
def test_every_tiny_config_passes_its_dry_run(tmp_path, capsys, name):
    "The committed tiny configs (the pre-registered study's among them) list their runs and check their analysis: block."
    cfg = yaml.safe_load((ROOT / "configs" / name).read_text())
    cfg["templates"] = {k: str(ROOT / v) for k, v in cfg["templates"].items()}
    cfg["results_dir"] = str(tmp_path / "results")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    rc, out, err = run_main(capsys, "sweep", path, "--dry-run")
    assert rc == 0, err
    assert f"{len(run_ids(path))} runs" in out
    if "analysis" in cfg:
        from frpo_nb.stats import analysis_spec
        spec = analysis_spec(None, path)
        labels = {m.label for m in load_config(path).methods}     # as the sweep names them (a default label where none is given)
        assert spec["primary"]["method"] in labels
        assert all(c["method"] in labels and c.get("reference", "grpo") in labels for c in spec["secondary"])


PROBE = ('run_dir = "."\nseed = 0\nlamb = None\nvalue = 1.0\nnum_processes = 1',
         'import os, sys\npreloaded = "torch" in sys.modules\nfrom pathlib import Path\nimport matplotlib.pyplot as plt\nimport torch\n'
         'from frpo_nb.core import write_json_atomic\n'
         'earlier = globals().get("MARK")\nMARK = run_dir\n'
         'write_json_atomic(Path(run_dir, "metrics.json"), {"value": value, "lamb": lamb, "earlier": earlier, '
         '"pid": os.getpid(), "torch_preloaded": preloaded, "cwd": os.getcwd() == str(Path(run_dir).resolve()), '
         '"threads": os.environ.get("OMP_NUM_THREADS"), "backend": plt.get_backend(), "path0": sys.path[0]})')


def test_preloaded_kernels_keep_runs_apart(tmp_path):
    "A sweep's runs in kernels forked from the preloaded interpreter: own processes, no shared state, the same records as ordinary kernels."
    import nbformat
    cfg = write_config(tmp_path, regimes=[], templates={"train": "tpl/probe.ipynb"})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE[0], metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell(PROBE[1])])
    nbformat.write(nb, tmp_path / "tpl" / "probe.ipynb")
    ids = run_ids(cfg)
    records = {}
    for mode, env in (("preloaded", {}), ("ordinary", {"FRPO_PRELOADED_KERNELS": "0"})):
        res = subprocess.run([PY, "-m", "frpo_nb.cli", "sweep", str(cfg), "--no-progress", "--results", str(tmp_path / mode)],
                             capture_output=True, text=True, timeout=600, env=os.environ | env)
        assert res.returncode == 0, res.stdout + res.stderr
        records[mode] = {i: read(tmp_path / mode, i)["metrics"] for i in ids}
    pre, plain = records["preloaded"], records["ordinary"]
    assert all(m["torch_preloaded"] for m in pre.values()) and not any(m["torch_preloaded"] for m in plain.values())
    assert {m["threads"] for m in pre.values()} == {m["threads"] for m in plain.values()}
    assert len({m["pid"] for m in pre.values()}) == 2 and all(m["earlier"] is None and m["cwd"] for m in pre.values())
    for i in ids:                                          # the rest is what an ordinary kernel records
        differ = {k: (v, plain[i][k]) for k, v in pre[i].items() if k not in ("pid", "torch_preloaded") and v != plain[i][k]}
        assert not differ, differ
