"""Where a tiny run's time goes, phase by phase, with each phase's arithmetic and how far it is from the floor.

    .venv/bin/python bench/bench_phases.py --base <a built base folder> [--tree <a checkout>] [--runs train,sft]

Runs one train run (GRPO, the robustness profile) and one SFT run (`sft-alpaca`, curve every 20 steps) of the tiny
safety study — the settings of `bench/bench_runs.yaml` — in this process, the templates' cells executed as papermill
would run them, from the code of `--tree` (default: this checkout; a checkout of an older commit profiles that code).
One thread. Each run is executed twice with the same seed (the same work):

1. timed: the functions that make up each phase are wrapped, and each phase gets the wall time spent inside them
   minus the time of nested phases (so a sampling call inside a curve evaluation inside training counts as sampling);
2. counted: the same run under a torch dispatch mode that records every matrix product and attention kernel
   (`mm`, `addmm`, `bmm`, `baddbmm`, CPU scaled-dot-product attention, forward and backward) with the phase it ran in,
   its FLOPs (torch.utils.flop_counter's formulas) and its operands' shapes and strides.

The floor of a phase is the time those kernels alone take at one thread on the same shapes: every distinct
(op, shapes, strides) is timed on random operands after the run and multiplied by how often it ran. `share` =
floor / measured time: the fraction of the phase that is arithmetic at the rate this machine's kernels reach on
those shapes; the rest is everything else (Python, small element-wise ops, copies, sampling's random draws, I/O).
The imports are timed in a fresh interpreter (what each run's kernel pays) and have no arithmetic.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runs import run_template   # noqa: E402  (exec of a template's cells in this process, the same in both benches)

ROOT = Path(__file__).resolve().parents[1]

# phase -> functions ("module:Qualname.attr"); a nested phase's time goes to it, not to its parent
PHASES = {
    "model loading": ["transformers.modeling_utils:PreTrainedModel.from_pretrained"],
    "evaluation: sampling": ["frpo_nb.evaluate:sample_completions"],
    "evaluation: reference log-probs (KL)": ["frpo_nb.evaluate:completion_logps"],
    "evaluation: rewards, refusal, profile (rest)": ["frpo_nb.evaluate:evaluate_policy", "frpo_nb.evaluate:prompt_rewards"],
    "RL steps: generation (model.generate in TRL)": ["transformers.generation.utils:GenerationMixin.generate",
                                                     "frpo_nb.decoding:decode"],
    "RL steps: rewards, reference/old log-probs (rest of TRL's scoring)": [
        "trl.trainer.grpo_trainer:GRPOTrainer._generate_and_score_completions",
        "frpo_nb.trainer:FRPOTrainer._generate_and_score_completions"],
    "training steps: forward, loss, backward": ["transformers.trainer:Trainer.training_step",
                                                "trl.trainer.grpo_trainer:GRPOTrainer.training_step"],
    "training loop: optimizer, data, logging (rest of Trainer.train)": ["transformers.trainer:Trainer.train"],
    "saving": ["transformers.modeling_utils:PreTrainedModel.save_pretrained",
               "transformers.tokenization_utils_base:PreTrainedTokenizerBase.save_pretrained",
               "transformers.trainer:Trainer.save_model"],
}
OTHER = "other (trainer set-up, data sets, plots, records)"


class Tracker:
    "Exclusive wall time per phase; the phase now running (for the counting mode)."

    def __init__(self):
        self.stack, self.seconds = [], defaultdict(float)

    @property
    def current(self) -> str:
        return self.stack[-1][0] if self.stack else OTHER

    def wrap(self, phase: str, fn):
        @functools.wraps(fn)
        def wrapped(*a, **k):
            if phase.startswith("RL steps: generation") and self.current not in (PHASES_RL_SCORING, phase):
                return fn(*a, **k)                                       # decoding for the evaluation: its phase
            if self.stack and self.stack[-1][0] == phase: return fn(*a, **k)  # a subclass calling its parent
            t0 = time.perf_counter()
            self.stack.append([phase, 0.0])
            try:
                return fn(*a, **k)
            finally:
                _, nested = self.stack.pop()
                dt = time.perf_counter() - t0
                self.seconds[phase] += dt - nested
                if self.stack: self.stack[-1][1] += dt
        return wrapped


PHASES_RL_SCORING = "RL steps: rewards, reference/old log-probs (rest of TRL's scoring)"


def install(tracker: Tracker) -> list:
    "Wrap every phase function that exists in the imported code; returns what to undo."
    undo = []
    for phase, targets in PHASES.items():
        for target in targets:
            mod_name, qual = target.split(":")
            try: mod = importlib.import_module(mod_name)
            except ImportError: continue
            *owner_path, attr = qual.split(".")
            owner = mod
            for p in owner_path: owner = getattr(owner, p, None)
            if owner is None or attr not in vars(owner): continue
            raw = vars(owner)[attr]
            if isinstance(raw, classmethod):
                new = classmethod(tracker.wrap(phase, raw.__func__))
            else:
                new = tracker.wrap(phase, raw)
            setattr(owner, attr, new)
            undo.append((owner, attr, raw))
            for m in list(sys.modules.values()):      # names other modules imported (from x import f)
                if getattr(m, "__name__", "").startswith("frpo_nb") and m is not owner:
                    for k, v in list(vars(m).items()):
                        if v is raw: setattr(m, k, new); undo.append((m, k, raw))
    return undo


def uninstall(undo: list) -> None:
    for owner, attr, raw in reversed(undo): setattr(owner, attr, raw)


def make_counter(tracker: Tracker):
    "A dispatch mode recording the matrix products and attention kernels per phase."
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count
    aten = torch.ops.aten
    sdpa_fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    sdpa_bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    mm_ops = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm}

    def spec(x):
        if isinstance(x, torch.Tensor): return ("T", tuple(x.shape), tuple(x.stride()), str(x.dtype))
        if isinstance(x, (list, tuple)): return tuple(spec(y) for y in x)
        return x

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.flops, self.calls = defaultdict(int), Counter()   # phase -> FLOPs; (phase, op, specs) -> calls

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            packet = func.overloadpacket
            if packet in mm_ops: flops = flop_registry[packet](*args, **kwargs, out_val=out)
            elif sdpa_fwd is not None and packet == sdpa_fwd: flops = sdpa_flop_count(args[0].shape, args[1].shape, args[2].shape)
            elif sdpa_bwd is not None and packet == sdpa_bwd:
                flops = sdpa_backward_flop_count(args[0].shape, args[1].shape, args[2].shape, args[3].shape)
            else: return out
            phase = tracker.current
            self.flops[phase] += flops
            self.calls[(phase, func, spec(args), tuple(sorted((k, spec(v)) for k, v in kwargs.items())))] += 1
            return out
    return Count()


def kernel_seconds(func, args_spec, kwargs_spec, reps: int = 20) -> float:
    "Seconds of one call of `func` on random operands of the recorded shapes, strides and dtypes (one thread)."
    import torch

    def build(s):
        if isinstance(s, tuple) and s and s[0] == "T":
            _, shape, stride, dtype = s
            dtype = getattr(torch, dtype.replace("torch.", ""))
            t = torch.empty_strided(shape, stride, dtype=dtype)
            if dtype == torch.bool: t.fill_(True)
            elif dtype.is_floating_point: t.normal_()
            else: t.zero_()
            return t
        if isinstance(s, tuple): return type(s)(build(y) for y in s)
        return s
    args, kwargs = [build(s) for s in args_spec], {k: build(v) for k, v in kwargs_spec}
    func(*args, **kwargs)
    t0, n = time.perf_counter(), 0
    while n < reps and (n < 3 or time.perf_counter() - t0 < 0.02):
        func(*args, **kwargs); n += 1
    return (time.perf_counter() - t0) / n


def import_seconds(tree: Path, template: Path) -> float:
    "Seconds a fresh interpreter takes for the template's imports (what each run's kernel pays)."
    import nbformat
    nb = nbformat.read(template, as_version=4)
    code = next(c.source for c in nb.cells if c.cell_type == "code" and "import" in c.source and "parameters" not in c.metadata.get("tags", []))
    imports = "\n".join(l for l in code.splitlines() if l.startswith(("import ", "from ")))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", imports], check=True, cwd=tree,
                   env=os.environ | {"PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t


def jobs(tree: Path, work: Path, base: Path, tag: str) -> list:
    train_dir, ft_dir = work / f"train-{tag}", work / f"sft-{tag}"
    return [("train", tree / "nbs/experiments/train.ipynb",
             dict(run_dir=str(train_dir), method="grpo", method_label="grpo", lamb=None, beta=0.1, scale_rewards="group",
                  max_steps=60, learning_rate=3e-4, normal_copies=2, robustness_samples=16, base_cache=str(base.parent))),
            ("sft", tree / "nbs/experiments/finetune.ipynb",
             dict(run_dir=str(ft_dir), parent_dir=str(train_dir), regime="sft-alpaca", max_steps=60, learning_rate=3e-4, every=20))]


def parent_record(train_dir: Path) -> None:
    "The record the sweep writes for a train run (the finetune template reads it)."
    rec = {"status": "done", "kind": "train", "params": {"setting": "safety", "seed": 0},
           "defaults": {"eval_samples": 8, "eval_prompts": None}}
    (train_dir / "result.json").write_text(json.dumps(rec))


def main(a) -> None:
    tree = Path(a.tree).resolve()
    sys.path.insert(0, str(tree))
    os.environ["PYTHONPATH"] = str(tree)
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    torch.set_num_threads(1)
    import frpo_nb
    for m in ("frpo_nb.evaluate", "frpo_nb.finetune", "frpo_nb.trainer", "frpo_nb.tiny", "trl"): importlib.import_module(m)
    assert Path(frpo_nb.__file__).resolve().parent == tree / "frpo_nb", f"imported {frpo_nb.__file__}, not {tree}"
    work = Path(tempfile.mkdtemp(prefix="bench-phases-"))
    wanted = a.runs.split(",")
    report = {}
    try:
        base = work / "_bases" / Path(a.base).name
        shutil.copytree(a.base, base)
        for tag in ("timed", "counted"):
            for name, template, params in jobs(tree, work, base, tag):
                if name not in wanted: continue
                if name == "sft" and "train" not in wanted: raise SystemExit("the SFT run needs the train run (--runs train,sft)")
                Path(params["run_dir"]).mkdir(parents=True)
                tracker = Tracker()
                undo = install(tracker)
                counter = make_counter(tracker) if tag == "counted" else None
                try:
                    if counter is not None:
                        with counter: total = run_template(template, params)
                    else: total = run_template(template, params)
                finally: uninstall(undo)
                if name == "train": parent_record(Path(params["run_dir"]))
                if name not in report: report[name] = {"imports": import_seconds(tree, template)}
                r = report[name]
                if counter is None:
                    r["total"], r["seconds"] = total, dict(tracker.seconds)
                    r["seconds"][OTHER] = total - sum(tracker.seconds.values())
                else:
                    r["flops"], r["calls"] = dict(counter.flops), counter.calls
                print(f"{name} ({tag}): {total:.1f} s", flush=True)
        # the floor: every distinct kernel call timed on its own, times how often it ran
        cache: dict = {}
        for name, r in report.items():
            floor = defaultdict(float)
            for (phase, func, args, kwargs), n in r.pop("calls").items():
                key = (func, args, kwargs)
                if key not in cache: cache[key] = kernel_seconds(func, args, kwargs)
                floor[phase] += n * cache[key]
            r["floor"] = dict(floor)
        print(f"\n{len(cache)} distinct kernel calls timed")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ncode: {tree}; torch {torch.__version__}, {torch.get_num_threads()} thread; machine: {os.cpu_count()} cpus")
    print(f"{'run':6s} {'phase':66s} {'s':>7s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'floor s':>8s} {'share':>6s}")
    for name, r in report.items():
        rows = [("imports (fresh interpreter)", r["imports"], 0, 0.0)]
        rows += [(p, s, r["flops"].get(p, 0), r["floor"].get(p, 0.0)) for p, s in r["seconds"].items() if s > 0.005]
        tot_s, tot_f, tot_fl = 0.0, 0, 0.0
        for p, s, f, fl in rows:
            tot_s += s; tot_f += f; tot_fl += fl
            print(f"{name:6s} {p:66s} {s:7.2f} {f / 1e9:8.2f} {f / 1e9 / s if s else 0:8.1f} {fl:8.2f} {fl / s if s else 0:6.1%}")
        print(f"{name:6s} {'whole run (imports + in process)':66s} {tot_s:7.2f} {tot_f / 1e9:8.2f} {tot_f / 1e9 / tot_s:8.1f} {tot_fl:8.2f} {tot_fl / tot_s:6.1%}")
    if a.json:
        Path(a.json).write_text(json.dumps({k: {kk: vv for kk, vv in v.items()} for k, v in report.items()}, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="a built base policy folder (results/<sweep>/_bases/base-tiny-…)")
    ap.add_argument("--tree", default=str(ROOT), help="the checkout whose code runs (default: this one)")
    ap.add_argument("--runs", default="train,sft")
    ap.add_argument("--json", help="also write the figures here")
    main(ap.parse_args())
