"""The evaluate stage for real: lm-evaluation-harness (HF backend) on a local MATH500-shaped task and EvalPlus on a
local MBPP+-shaped file, run on tiny models through `frpo_nb.paper.evaluate_run` — the command lines the presets
use, with `backend: hf` and the local data in place of the hub's — and the scores parsed from the files the
harnesses wrote. Slow (about two minutes on a CPU); skipped with the reason when the `[eval]` extra is missing.

The models answer without training (`frpo_nb.testing.constant_model`): one always says "5" (right for the first
MATH problem, wrong for the second: math_verify 0.5; exact_match 0, the zero-shot chat format never writes the
"Final Answer:" sentence it reads), one ends its turn at once (no code: pass@1 0). EvalPlus's verdicts on known
solutions (two right, one wrong) check that a pass is read as a pass.
"""
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from frpo_nb.benchmarks import find_evalplus_results, local_lm_eval_task, parse_evalplus_results, read_benchmark, run_benchmark
from frpo_nb.core import load_config
from frpo_nb.paper import evaluate_run
from frpo_nb.sweep import expand_grid
from frpo_nb.testing import constant_model, write_standins

ROOT = Path(__file__).resolve().parents[1]
MISSING = [m for m in ("lm_eval", "evalplus", "math_verify") if find_spec(m) is None]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"the [eval] extra is not installed (no {', '.join(MISSING)}): "
                                                        'pip install -e ".[eval]"')]

MATH500 = [{"problem": "What is $2+3$?", "solution": "We add: $2+3=\\boxed{5}$.", "answer": "5", "subject": "Algebra",
            "level": 1, "unique_id": "test/algebra/1.json"},
           {"problem": "What is $3+4$?", "solution": "We add: $3+4=\\boxed{7}$.", "answer": "7", "subject": "Algebra",
            "level": 1, "unique_id": "test/algebra/2.json"}]
MBPP = [("Mbpp/11", "add", "Write a function to add two numbers.", "def add(a, b):\n    return a + b\n",
         [[1, 2], [3, 4]], [[5, 6], [-1, 1]], 3),
        ("Mbpp/12", "square", "Write a function to square a number.", "def square(x):\n    return x * x\n",
         [[2], [3]], [[-4]], 4),
        ("Mbpp/13", "first", "Write a function that returns the first item of a list.",
         "def first(items):\n    return items[0]\n", [[[1, 2]]], [[["a"]]], 1)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    "Tiny models that say '5' / nothing, the local data files, a local lm-eval task, and EvalPlus's cache in a temp folder."
    d = tmp_path_factory.mktemp("bench")
    s = write_standins(d / "standins")
    five, silent = d / "five" / "policy", d / "silent" / "policy"
    constant_model(s["model"], five, "5"); constant_model(s["model"], silent, "<|im_end|>")
    (d / "math500.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MATH500))
    local_lm_eval_task(d / "math500.jsonl", d / "tasks", task="math500_local")
    with open(d / "mbpp_plus.jsonl", "w") as f:
        for tid, ep, text, sol, base, plus, first_out in MBPP:
            args = ", ".join(map(repr, base[0]))
            f.write(json.dumps({"task_id": tid, "prompt": f'"""\n{text}\nassert {ep}({args}) == {first_out!r}\n"""\n',
                                "entry_point": ep, "canonical_solution": sol, "base_input": base, "plus_input": plus,
                                "atol": 0, "contract": "", "assertion": ""}) + "\n")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(d / "cache")      # EvalPlus caches ground truth in the user's cache folder
    yield d
    if old is None: os.environ.pop("XDG_CACHE_HOME", None)
    else: os.environ["XDG_CACHE_HOME"] = old


def evaluate_params(world, parent) -> dict:
    "The math preset's evaluate run, its GPU settings replaced by the HF backend and the local data."
    job = next(j for j in expand_grid(load_config(ROOT / "configs" / "paper-math-qwen.yaml")) if j.kind == "evaluate")
    return job.params | {"parent_dir": str(parent), "backend": "hf", "batch_size": 2, "max_gen_toks": 1,
                         "tensor_parallel_size": 1, "lm_eval_include_path": str(world / "tasks"),
                         "benchmark_tasks": {"math500": "math500_local"}, "mbpp_override_path": str(world / "mbpp_plus.jsonl")}


def test_evaluate_stage_runs_both_harnesses(world):
    params = evaluate_params(world, world / "silent") | {"run_dir": str(world / "runs" / "silent")}
    assert params["benchmarks"] == ["math500", "mbpp_plus"]
    m = evaluate_run(params)
    run = world / "runs" / "silent"
    assert json.loads((run / "metrics.json").read_text()) == m
    # parsed from the harnesses' own files
    assert m["math500/math500_local/math_verify"] == 0.0 and m["math500/score"] == 0.0     # no answer at all
    assert m["mbpp_plus/mbpp/pass@1"] == 0.0 and m["mbpp_plus/mbpp+/pass@1"] == 0.0 and m["mbpp_plus/n_tasks"] == 3.0
    assert m["mbpp_plus/score"] == m["mbpp_plus/mbpp+/pass@1"]
    assert list((run / "math500").rglob("results_*.json")) and find_evalplus_results(run / "mbpp_plus").is_file()


def test_lm_eval_scores_a_boxed_answer(world):
    out = world / "runs" / "five" / "math500"
    m = run_benchmark("math500", str(world / "five" / "policy"), out, backend="hf", batch_size=2, max_gen_toks=1,
                      task="math500_local", include_path=str(world / "tasks"))
    assert m["math500_local/math_verify"] == 0.5 and m["score"] == 0.5            # "5": right, then wrong
    assert m["math500_local/exact_match"] == 0.0                                   # needs "Final Answer: ..."
    assert read_benchmark("math500", out, task="math500_local", metric="minerva_math500/exact_match")["score"] == 0.0
    samples = [json.loads(l) for p in out.rglob("samples_*.jsonl") for l in p.read_text().splitlines()]
    assert [s["resps"][0][0] for s in samples] == ["5", "5"]


def test_evalplus_reads_passes_from_its_own_verdicts(world):
    rows = [json.loads(l) for l in (world / "mbpp_plus.jsonl").read_text().splitlines()]
    samples = world / "known" / "mbpp" / "known.jsonl"
    samples.parent.mkdir(parents=True)
    sols = [r["canonical_solution"] for r in rows[:2]] + ["def first(items):\n    return items[-1]\n"]   # the last is wrong
    samples.write_text("".join(json.dumps({"task_id": r["task_id"], "solution": s}) + "\n" for r, s in zip(rows, sols)))
    env = os.environ | {"MBPP_OVERRIDE_PATH": str(world / "mbpp_plus.jsonl")}
    done = subprocess.run([str(Path(sys.executable).parent / "evalplus.evaluate"), "--dataset", "mbpp", "--samples", str(samples)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    m = parse_evalplus_results(find_evalplus_results(world / "known"))
    assert m == {"mbpp/pass@1": 2 / 3, "mbpp+/pass@1": 2 / 3, "n_tasks": 3.0}
