"""Wall time of a study's runs, this code against an older commit, side by side; and where a run's time goes.

    .venv/bin/python bench/bench_runs.py [--old REF] [--reps 2] [--config bench/bench_runs.yaml]
    .venv/bin/python bench/bench_runs.py --profile-only

Side by side: the same one-seed sweep (`bench/bench_runs.yaml`: the runs of the tiny safety study — a train run with
the robustness profile, and its downstream SFT and RL runs, for GRPO and for FRPO) is run from a git worktree of
REF (default: main before issue 24's decoding loop; a clone, so this repository's git state is not touched) and from this checkout *at the same time*, one worker and one
thread each, so that both see the same load on the machine. Each repetition starts from empty results folders
holding the same base policy (built once, and copied), and the two sweeps swap their start order every repetition.
Per run: the `wall_s` its `result.json` records (kernel start to record). Reported: the median over repetitions per
run, and the ratio old / new per run and for the median run of the sweep.

Profile: one train and one finetune run of this checkout executed in this process under cProfile (the template's
cells as papermill would run them; the imports timed in a fresh interpreter), time by phase.
"""
import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DEFAULT_OLD = "faa8d8c"     # main before the decoding loop of issue 24 (4e7a35b: before the study issue's speed-ups)


def sweep_cmd(tree: Path, config: Path) -> list[str]:
    return [PY, "-m", "frpo_nb.cli", "sweep", str(config), "--workers", "1", "--no-progress"]


def env_for(tree: Path) -> dict:
    return os.environ | {"PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def write_config(src: Path, tree: Path, results: Path) -> Path:
    "The bench config placed inside `tree` (templates resolve against the config's repository), results in `results`."
    out = tree / "bench" / "out" / "bench-runs.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = src.read_text().replace("results_dir: RESULTS", f"results_dir: {results}")
    out.write_text(text)
    return out


def base_policy(cache: Path, given: str | None = None) -> Path:
    "The study's base policy: `given` (a folder `tiny_base` built), else built once (two threads) in `cache`."
    from frpo_nb.tiny import tiny_base
    if given:
        dest = cache / Path(given).name
        shutil.copytree(given, dest)
        return dest
    return tiny_base(cache, progress=True)


def run_pair(trees: dict, config: Path, work: Path, base: Path, order: list[str]) -> dict:
    procs, results = {}, {}
    for name in order:
        res = work / name
        shutil.rmtree(res, ignore_errors=True)
        (res / "_bases").mkdir(parents=True)
        shutil.copytree(base, res / "_bases" / base.name)
        cfg = write_config(config, trees[name], res)
        procs[name] = subprocess.Popen(sweep_cmd(trees[name], cfg), cwd=trees[name], env=env_for(trees[name]),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        results[name] = res
        time.sleep(1)
    for name, p in procs.items():
        _, err = p.communicate()
        if p.returncode != 0: raise SystemExit(f"{name} sweep failed ({p.returncode}):\n{err[-3000:]}")
    out = {}
    for name, res in results.items():
        for rec in res.glob("*/result.json"):
            r = json.loads(rec.read_text())
            key = r["run_id"].rsplit("-", 1)[0]
            out[(name, key)] = (r["kind"], r["timings"]["wall_s"], r.get("metrics") or {})
    return out


VOLATILE_METRICS = ("base", "effective_config")   # a path, and the trainer's settings (checked by the trainer's tests)


def metric_diff(old: dict, new: dict) -> str:
    "'equal', or the largest difference between two runs' numeric metrics (and any key only one has)."
    keys = (set(old) | set(new)) - set(VOLATILE_METRICS)
    only = sorted(k for k in keys if (k in old) != (k in new))
    diffs = [abs(old[k] - new[k]) for k in keys - set(only)        # equal values (inf too), or NaN on both sides: equal
             if isinstance(old[k], (int, float)) and isinstance(new[k], (int, float)) and old[k] != new[k]
             and not (old[k] != old[k] and new[k] != new[k])]
    other = [k for k in keys - set(only) if not isinstance(old[k], (int, float)) and old[k] != new[k]]
    nan = sorted(k for k in keys - set(only) if isinstance(old[k], float) and isinstance(new[k], float)
                 and (old[k] != old[k]) != (new[k] != new[k]))                       # NaN on one side only
    if not only and not other and not nan and not any(diffs): return "equal"
    return (f"max |diff| {max((d for d in diffs if d == d), default=0):.2e}" + (f", NaN on one side: {nan}" if nan else "")
            + (f", only in one: {only}" if only else "") + (f", differ: {other}" if other else ""))


def side_by_side(args) -> None:
    old_tree = Path(tempfile.mkdtemp(prefix="bench-old-")) / "tree"
    # a clone, not a worktree: the comparison leaves this repository's git administration alone
    subprocess.run(["git", "clone", "-q", str(ROOT), str(old_tree)], check=True)
    subprocess.run(["git", "checkout", "-q", args.old], cwd=old_tree, check=True)
    trees = {"old": old_tree, "new": ROOT}
    work = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    try:
        base = base_policy(work / "_bases", args.base)
        walls = {}
        for rep in range(args.reps):
            order = ["old", "new"] if rep % 2 == 0 else ["new", "old"]
            for k, v in run_pair(trees, Path(args.config), work, base, order).items(): walls.setdefault(k, []).append(v)
            for k in sorted({k for _, k in walls}):
                print(f"  metrics of {k}, old vs new, repetition {rep + 1}: {metric_diff(walls[('old', k)][-1][2], walls[('new', k)][-1][2])}", flush=True)
            print(f"repetition {rep + 1}/{args.reps} done", flush=True)
    finally:
        shutil.rmtree(old_tree.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    runs = sorted({k for _, k in walls})
    print(f"\nmachine: {os.cpu_count()} cpus; old = {args.old}, new = this checkout; {args.reps} repetitions, medians of wall_s")
    print(f"{'run':58s} {'kind':9s} {'old s':>7s} {'new s':>7s} {'old/new':>8s}")
    old_all, new_all = [], []
    for k in runs:
        kind = walls[("old", k)][0][0]
        o = statistics.median(w for _, w, _ in walls[("old", k)]); n = statistics.median(w for _, w, _ in walls[("new", k)])
        old_all.append(o); new_all.append(n)
        print(f"{k:58s} {kind:9s} {o:7.1f} {n:7.1f} {o / n:8.2f}x")
    mo, mn = statistics.median(old_all), statistics.median(new_all)
    print(f"{'median run':58s} {'':9s} {mo:7.1f} {mn:7.1f} {mo / mn:8.2f}x")
    print(f"{'whole sweep (sum of runs)':58s} {'':9s} {sum(old_all):7.1f} {sum(new_all):7.1f} {sum(old_all) / sum(new_all):8.2f}x")


# ---------------------------------------------------------------------------------------------------------- profile
def cumtime(stats: pstats.Stats, name: str) -> float:
    "Cumulative seconds in functions called `name` (the outermost when a subclass method calls its parent's)."
    return max((v[3] for (f, l, fn), v in stats.stats.items() if fn == name), default=0.0)


def phases(st: pstats.Stats) -> dict:
    "Seconds per phase of a profiled run."
    robust, sampling = cumtime(st, "prompt_rewards"), cumtime(st, "sample_completions")
    gen = cumtime(st, "_generate_and_score_completions")
    return {"robustness profile (sampling + rewards)": robust,
            "evaluation: sampling": max(sampling - robust, 0.0),
            "evaluation: log-probabilities for the KL": cumtime(st, "completion_logps"),
            "RL steps: generation + rewards": gen,
            "training steps: loss, backward, optimizer": cumtime(st, "training_step") - gen}


def run_template(template: Path, params: dict) -> float:
    "Exec `template`'s cells with `params` injected after its parameters cell, in this process; seconds."
    import matplotlib
    matplotlib.use("Agg")
    nb = nbformat.read(template, as_version=4)
    ns, t = {}, time.perf_counter()
    for cell in nb.cells:
        if cell.cell_type != "code": continue
        exec(compile(cell.source, str(template), "exec"), ns)
        if "parameters" in cell.metadata.get("tags", []): ns.update(params)
    elapsed = time.perf_counter() - t
    import matplotlib.pyplot as plt
    plt.close("all")                          # the template's figures, not kept across runs of one process
    return elapsed


def import_seconds(template: Path) -> float:
    "Seconds a fresh interpreter takes for the template's import cell (what each run's kernel pays)."
    nb = nbformat.read(template, as_version=4)
    code = next(c.source for c in nb.cells if c.cell_type == "code" and "import" in c.source and "parameters" not in c.metadata.get("tags", []))
    imports = "\n".join(l for l in code.splitlines() if l.startswith(("import ", "from ")))
    t = time.perf_counter()
    subprocess.run([PY, "-c", imports], check=True, cwd=ROOT, env=env_for(ROOT))
    return time.perf_counter() - t


def profile(args) -> None:
    import torch
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    try:
        base = base_policy(work / "_bases", args.base)
        train_dir, ft_dir = work / "train", work / "finetune"
        jobs = [("train", ROOT / "nbs/experiments/train.ipynb",
                 dict(run_dir=str(train_dir), method="grpo", method_label="grpo", lamb=None, beta=0.1, scale_rewards="group",
                      max_steps=60, learning_rate=3e-4, normal_copies=2, robustness_samples=16, base_cache=str(base.parent))),
                ("finetune (sft-alpaca)", ROOT / "nbs/experiments/finetune.ipynb",
                 dict(run_dir=str(ft_dir), parent_dir=str(train_dir), regime="sft-alpaca", max_steps=60, learning_rate=3e-4, every=20))]
        for name, template, params in jobs:
            Path(params["run_dir"]).mkdir(parents=True)
            imports = import_seconds(template)
            pr = cProfile.Profile(); pr.enable()
            total = run_template(template, params)
            pr.disable()
            if name == "train":   # the finetune template reads the train run's record (as the sweep writes it)
                rec = {"status": "done", "kind": "train", "params": {"setting": "safety", "seed": 0}, "defaults": {"eval_samples": 8, "eval_prompts": None}}
                (train_dir / "result.json").write_text(json.dumps(rec))
            st = pstats.Stats(pr)
            print(f"\n{name}: {total:.1f} s in process (+ {imports:.1f} s of imports in a fresh interpreter)")
            left = total
            for phase, s in phases(st).items():
                if s > 0: print(f"  {phase:45s} {s:6.1f} s"); left -= s
            print(f"  {'other (model loading, trainer set-up, saving)':45s} {left:6.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default=DEFAULT_OLD, help="git ref to compare with (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--config", default=str(ROOT / "bench" / "bench_runs.yaml"))
    ap.add_argument("--profile-only", action="store_true", help="only the in-process profile of this checkout")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--base", help="an already built base policy folder (results/<sweep>/_bases/base-tiny-…) to copy instead of building it")
    a = ap.parse_args()
    if not a.profile_only: side_by_side(a)
    if not a.no_profile: profile(a)
