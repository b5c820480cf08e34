"""Per-run overhead of the sweep's papermill execution, against running the same notebook cells in-process.

    .venv/bin/python bench/bench_papermill.py [--reps 5] [--templates light,stack]

For each template, five ways to execute it, interleaved (the order rotates every repetition) and
reported as medians:

  in-process   exec of the notebook's cells (parameters → injected values → body) in this process:
               the work itself; imports are cached after the first repetition
  papermill    frpo_nb.sweep.execute_notebook: kernel start + parameter injection + execution + saving
               the executed notebook + kernel shutdown
  run          frpo_nb.sweep.execute_job: papermill + template inspection + versions + git state +
               result.json (what one run of `frpo-nb sweep` costs)
  worker       execute_job in a new worker process (forked from the fork server), as `--workers N > 1`
               runs each run
  preloaded    execute_job with the run's kernel forked from a preloaded interpreter (frpo_nb.kernels), as a local
               sweep runs each run since issue 24

Templates: `light` is the smoke train template (writes metrics.json, imports only frpo_nb.core);
`stack` also imports what a training template imports (torch, transformers, trl, frpo_nb.loss), a
cost every fresh kernel pays again and an in-process loop pays once. Overhead = median − in-process.
"""
import argparse
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from frpo_nb.kernels import SERVER_ENV, preloaded_kernels
from frpo_nb.sweep import Job, execute_job, execute_notebook, worker_context
from frpo_nb.testing import write_smoke_templates

STACK = "import torch\nfrom transformers import AutoModelForCausalLM\nfrom trl import GRPOConfig, GRPOTrainer\nimport frpo_nb.loss\n"


def make_templates(folder: Path) -> dict[str, Path]:
    light = write_smoke_templates(folder)["train"]
    nb = nbformat.read(light, as_version=4)
    nb.cells[1].source = STACK + nb.cells[1].source
    nbformat.write(nb, folder / "stack.ipynb")
    return {"light": light, "stack": folder / "stack.ipynb"}


def in_process(template: Path, params: dict, run_dir: Path) -> None:
    nb, ns = nbformat.read(template, as_version=4), {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code": continue
        exec(compile(cell.source, f"{template.name}[{i}]", "exec"), ns)
        if "parameters" in cell.metadata.get("tags", []): ns.update(params)


def in_worker(ctx, job: Job, results: Path) -> None:
    proc = ctx.Process(target=execute_job, args=(job, results), kwargs={"root": Path.cwd()})
    proc.start()
    proc.join()
    assert proc.exitcode == 0, proc.exitcode


def ordinary(fn):
    "`fn` with papermill's own kernel start, even while the preloaded interpreter runs."
    def run(t):
        saved = os.environ.pop(SERVER_ENV, None)
        try: fn(t)
        finally:
            if saved: os.environ[SERVER_ENV] = saved
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--templates", default="light,stack", help="comma-separated subset of light,stack")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_papermill_"))
    templates = make_templates(work / "tpl")
    ctx, n = worker_context(), 0

    def job(template):
        nonlocal n
        n += 1
        return Job(f"bench-{n:08d}", "train", template, {"seed": 0, "value": 1.0})

    variants = {
        "in-process": lambda t: in_process(t, {"run_dir": str(work), "value": 1.0}, work),
        "papermill": ordinary(lambda t: execute_notebook(t, work / "out.ipynb", {"run_dir": str(work), "value": 1.0}, work, "python3")),
        "run": ordinary(lambda t: execute_job(job(t), work / "results", root=Path.cwd())),
        "worker": ordinary(lambda t: in_worker(ctx, job(t), work / "results")),
        "preloaded": lambda t: execute_job(job(t), work / "results", root=Path.cwd()),   # a run's kernel forked (frpo_nb.kernels)
    }
    server = preloaded_kernels()
    server.__enter__()
    print(f"machine: {platform.machine()}, {mp.cpu_count()} cpus, python {platform.python_version()}; "
          f"{a.reps} interleaved reps (+1 warm-up), medians in seconds")
    for name in a.templates.split(","):
        t = templates[name]
        for fn in variants.values(): fn(t)                 # warm-up: page cache, in-process imports
        times = {v: [] for v in variants}
        for rep in range(a.reps):
            order = list(variants)[rep % len(variants):] + list(variants)[:rep % len(variants)]
            for v in order:
                t0 = time.perf_counter()
                variants[v](t)
                times[v].append(time.perf_counter() - t0)
        med = {v: statistics.median(x) for v, x in times.items()}
        print(f"template {name}:")
        for v, m in med.items():
            extra = "" if v == "in-process" else f"   overhead {m - med['in-process']:6.2f} s"
            print(f"  {v:10s} {m:7.2f} s  (min {min(times[v]):.2f}, max {max(times[v]):.2f}){extra}")
        print(f"  per-run overhead of the sweep (run - in-process): {med['run'] - med['in-process']:.2f} s (target <= 10 s); "
              f"with --workers > 1: {med['worker'] - med['in-process']:.2f} s; "
              f"with the preloaded kernels (what a local sweep does): {med['preloaded'] - med['in-process']:.2f} s")
    server.__exit__(None, None, None)
    assert not list((work / "results").glob("*/error.json")), "a benchmarked run failed"
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
