"""The paper-scale pipeline on CPU stand-ins: every paper preset passes the sweep's validation against the paper
templates; the paper train and finetune templates run end to end through the sweep's papermill executor on the
math preset's own parameters (tiny random policy, data files of the real schemas, CPU overrides); the safety
stages run with every judge of the safety preset, the API judges answered by a fake OpenAI-compatible server on
127.0.0.1; the launcher builds the `accelerate launch` command, and (slow) a train stage really runs under
`accelerate launch` in two processes.
"""
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fake_openai_server import FakeOpenAIServer, Reply, chat_reply, moderation_reply
from frpo_nb import paper
from frpo_nb.core import RESERVED_PARAMS, load_config, read_jsonl
from frpo_nb.judges import FRPO_HARMBENCH_SYSTEM
from frpo_nb.paper import finetune_run, run_stage, train_run
from frpo_nb.testing import CPU_OVERRIDES, write_standins
from frpo_nb.cli import main
from frpo_nb.sweep import TemplateError, check_templates, execute_job, expand_grid, template_parameters
from frpo_nb.paper import PRESET_KEYS

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs").glob("paper-*.yaml"))
RUBRIC = "#overall_reasoning ok\n#scores\n1.a r\n1.b 0\n2.a c\n2.b 3\n3.a s\n3.b 5\n"   # score (3 + 5 - 2) / 8
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    return write_standins(tmp_path_factory.mktemp("standins"))


def test_three_paper_presets():
    assert [p.name for p in PRESETS] == ["paper-math-qwen.yaml", "paper-safety-mistral.yaml", "paper-safety-qwen.yaml"]


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_passes_sweep_dry_run(preset, tmp_path, capsys):
    assert main(["sweep", str(preset), "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    cfg = load_config(preset)
    assert f"{len(expand_grid(cfg))} runs" in out
    assert {cfg.template(s).name for s in ("train", "finetune", "evaluate")} == {
        "paper_train.ipynb", "paper_finetune.ipynb", "paper_evaluate.ipynb"}


@pytest.mark.parametrize("stage", ["train", "finetune", "evaluate"])
def test_paper_templates_declare_every_preset_key(stage):
    declared = template_parameters(ROOT / "nbs" / "experiments" / f"paper_{stage}.ipynb")
    missing = (set(RESERVED_PARAMS) | set(PRESET_KEYS[stage])) - set(declared)
    assert not missing, f"paper_{stage}.ipynb does not declare {sorted(missing)}"


def test_a_misspelt_preset_key_fails_validation():
    cfg = load_config(ROOT / "configs" / "paper-safety-mistral.yaml")
    cfg.train["lora_rank"] = 64
    with pytest.raises(TemplateError, match="train.lora_rank is not a parameter of paper_train.ipynb.*did you mean 'lora_r'"):
        check_templates(cfg, expand_grid(cfg))


def _job(cfg, kind, **where):
    return next(j for j in expand_grid(cfg) if j.kind == kind and all(j.params.get(k) == v for k, v in where.items()))


def test_math_preset_train_then_code_sft_through_papermill(standins, tmp_path):
    """The math preset's FRPO λ=2 run and its code SFT, executed by the sweep's executor on the paper templates."""
    cfg = load_config(ROOT / "configs" / "paper-math-qwen.yaml")
    train = _job(cfg, "train", method="frpo", lamb=2.0)
    ft = _job(cfg, "finetune", parent_run_id=train.run_id)
    train = replace(train, params=train.params | CPU_OVERRIDES["train"] | {
        "model": standins["model"], "train_data": standins["math_data"], "val_size": 4})
    ft = replace(ft, params=ft.params | CPU_OVERRIDES["finetune"] | {
        "model": standins["model"], "finetune_data": standins["sft-code"], "math_eval_data": standins["math_data"],
        "learning_rate": 0.05, "warmup_steps": 0,      # two steps that move the tiny policy visibly
        "checkpoint_every": 1, "keep_checkpoints": True})   # checkpoints (replacing save_strategy: epoch), kept
    results = tmp_path / "results"
    assert execute_job(train, results, root=ROOT) == "done", (results / train.run_id / "error.json").read_text()
    run = results / train.run_id
    m = json.loads((run / "result.json").read_text())["metrics"]
    cfg_used = m["effective_config"]
    assert (cfg_used["loss_type"], cfg_used["frpo_lambda"], cfg_used["beta"], cfg_used["learning_rate"]) == ("frpo", 2.0, 1e-4, 6e-6)
    assert (cfg_used["reward_weights"], cfg_used["lr_scheduler_type"], cfg_used["jackknife"], cfg_used["offset"]) == (
        [0.2, 0.8], "cosine", True, True)
    assert (m["lora"]["r"], m["lora"]["lora_alpha"], m["steps"]) == (64, 128, 2)
    assert m["reward_funcs"] == ["math_format_reward", "math_correct_reward"]
    assert (run / "policy" / "config.json").is_file() and (run / "adapter" / "adapter_config.json").is_file()

    assert execute_job(ft, results, root=ROOT) == "done", (results / ft.run_id / "error.json").read_text()
    run = results / ft.run_id
    curve = read_jsonl(run / "curve.jsonl")
    assert [r["step"] for r in curve] == [0, 1, 2] and set(curve[0]) == {"step", "math_accuracy", "kl_math"}
    assert abs(curve[0]["kl_math"]) < 1e-5 < curve[-1]["kl_math"]              # LoRA SFT moves the policy (greedy answers)
    assert sorted(p.parent.name for p in (run / "trainer").glob("checkpoint-*/complete.json")) == ["checkpoint-1", "checkpoint-2"]
    m = json.loads((run / "metrics.json").read_text())
    used = m["effective_config"]
    assert (m["lora"]["r"], used["weight_decay"], used["completion_only_loss"], used["lr_scheduler_type"]) == (16, 0.04, True, "cosine")
    assert (run / "policy" / "config.json").is_file() and (run / "finetune.ipynb").is_file()


def _fake_api(req):
    "Moderation: 0.2 for every response; the authors' HarmBench judge: always label 'No' (not harmful); StrongREJECT rubric: 0.75."
    if req.path.endswith("/moderations"):
        return Reply(moderation_reply([{"violence": 0.2, "hate": 0.01} for _ in req.body["input"]]))
    if req.body["messages"][0]["content"] == FRPO_HARMBENCH_SYSTEM:
        call = {"name": "labelling_function", "arguments": json.dumps({"Explanation": "refuses", "label": "No"})}
        return Reply({"choices": [{"index": 0, "message": {"role": "assistant", "content": None, "function_call": call}}]})
    return Reply(chat_reply(RUBRIC))


def test_safety_preset_with_the_papers_api_judges(standins, tmp_path, monkeypatch):
    """The safety preset's train and GSM8K SFT stages with its API judges (moderation, GPT-4o HarmBench, rubric) on a fake server."""
    cfg = load_config(ROOT / "configs" / "paper-safety-mistral.yaml")
    train = _job(cfg, "train", method="frpo", lamb=0.5)
    ft = _job(cfg, "finetune", parent_run_id=train.run_id, regime="sft-gsm8k")
    monkeypatch.setenv("FRPO_TEST_KEY", "sk-test")
    with FakeOpenAIServer(_fake_api) as server:
        api = {"api_base_url": server.url, "api_key_env": "FRPO_TEST_KEY", "reward_model_revision": None,
               "strongreject_model": standins["strongreject_model"], "reward_model": standins["reward_model"]}
        params = train.params | CPU_OVERRIDES["train"] | api | {
            "run_dir": str(tmp_path / "train"), "model": standins["model"], "train_data": standins["safety_train_data"],
            "val_fraction": 0.25, "lora_r": 4, "lora_alpha": 4}
        m = train_run({k: v for k, v in params.items() if v is not None})
        assert m["reward_funcs"] == ["safety", "normal"] and m["effective_config"]["frpo_lambda"] == 0.5
        moderated = [r for r in server.requests if r.path.endswith("/moderations")]
        assert moderated and moderated[0].headers["Authorization"] == "Bearer sk-test"
        assert moderated[0].body["model"] == "omni-moderation-latest"          # the preset's moderation model

        params = ft.params | CPU_OVERRIDES["finetune"] | api | {
            "run_dir": str(tmp_path / "ft"), "parent_dir": str(tmp_path / "train"), "finetune_data": standins["sft-gsm8k"],
            **{k: standins[k] for k in ("harmbench_data", "strongreject_data", "kl_safety_data", "kl_normal_data")}}
        n_before = len(server.requests)
        m = finetune_run({k: v for k, v in params.items() if v is not None})
        chats = [r.body["model"] for r in server.requests[n_before:] if r.path.endswith("/chat/completions")]
    curve = read_jsonl(tmp_path / "ft" / "curve.jsonl")
    assert [r["step"] for r in curve] == [0, 1, 2]
    assert all(r["harmbench_refusal"] == 1.0 and r["harmbench_unjudged"] == 0 for r in curve)   # the judge said "No"
    assert all(r["strongreject_score"] == pytest.approx(0.75) for r in curve)
    assert all(0.4 <= r["safety_reward"] <= 0.9 for r in curve)   # 1 − mean(scorer in [0, 1], moderation 0.2)
    assert {"gpt-4o-2024-11-20", "chatgpt-4o-latest"} <= set(chats)   # the preset's judges
    assert {"kl_safety", "kl_normal"} <= set(curve[0]) and "kl_to_ref" not in curve[0]   # the authors' KL, per prompt set
    assert m["harmbench_refusal_drop"] == 0 and m["steps"] == 2
    assert m["effective_config"]["lr_scheduler_type"] == "cosine" and m["effective_config"]["learning_rate"] == 6e-6


AUTHORS_MEASUREMENT = {   # the switch of each notes-file difference, and the authors' setting the safety presets must use
    "train": {"split_seed": 42, "strongreject_quantization": "auto"},
    "finetune": {"harmbench_judge_prompt": "authors", "harmbench_judge_model": "gpt-4o-2024-11-20", "redraw_eval_prompts": True,
                 "kl_max_context": 512, "kl_sampled": False, "eval_max_new_tokens": 512, "eval_prompts": 100,
                 "harmbench_first_n": 200, "kl_prompts": 128, "strongreject_quantization": "auto", "eval_strategy": "steps",
                 "eval_steps": 50, "val_size": 50}}


@pytest.mark.parametrize("preset", ["paper-safety-mistral", "paper-safety-qwen"])
def test_safety_presets_measure_as_the_authors(preset):
    cfg = load_config(ROOT / "configs" / f"{preset}.yaml")
    for stage, want in AUTHORS_MEASUREMENT.items():
        assert {k: getattr(cfg, stage).get(k) for k in want} == want, stage
    assert cfg.finetune["eval_repetition_penalty"] == (1.05 if "qwen" in preset else 1.0)   # the model's own, explicitly
    assert {d[3] for d in paper.DEVIATIONS if d[3]} <= set(PRESET_KEYS["train"]) | set(PRESET_KEYS["finetune"]) | set(PRESET_KEYS["evaluate"])


def test_math_preset_measures_as_the_authors():
    cfg = load_config(ROOT / "configs" / "paper-math-qwen.yaml")
    assert cfg.train["save_strategy"] == "epoch" and cfg.finetune["save_strategy"] == "epoch"   # the authors' per epoch,
    assert cfg.train["checkpoint_every"] == cfg.finetune["checkpoint_every"] == 50              # replaced: every 50 steps
    assert cfg.evaluate["benchmark_metrics"] == {"math500": "minerva_math500/math_verify"}
    assert cfg.train["reward_weights"] == [0.2, 0.8] and cfg.finetune["kl_max_context"] == 512


def test_missing_api_key_stops_before_training(standins, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = load_config(ROOT / "configs" / "paper-safety-qwen.yaml")
    params = _job(cfg, "train", method="grpo").params | {"run_dir": str(tmp_path), "model": standins["model"],
                                                          "train_data": standins["safety_train_data"]}
    with pytest.raises(RuntimeError, match=r"train.moderation_model = 'omni-moderation-latest' is an API judge, but the "
                                           r"environment variable \$OPENAI_API_KEY"):
        train_run(params)
    assert not (tmp_path / "trainer").exists()


def test_run_stage_launches_accelerate_for_several_processes(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, stdout, stderr, cwd, env):
        seen.update(cmd=cmd, cwd=cwd)
        Path(cwd, "metrics.json").write_text(json.dumps({"steps": 500}))
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(paper.subprocess, "run", fake_run)
    params = {"run_dir": str(tmp_path / "run"), "num_processes": 8, "accelerate_config": "configs/accelerate/zero2.yaml",
              "method": "frpo", "lamb": 0.5}
    assert run_stage("train", params) == {"steps": 500}
    params_file = tmp_path / "run" / "train_params.json"
    program = Path(sys.executable).parent / "accelerate"
    assert seen["cmd"] == [str(program) if program.exists() else "accelerate", "launch", "--config_file",
                           str(ROOT / "configs" / "accelerate" / "zero2.yaml"), "--num_processes", "8", "-m",
                           "frpo_nb.paper", "train", str(params_file)]
    assert Path(seen["cwd"]) == tmp_path / "run"
    assert json.loads(params_file.read_text())["accelerate_config"] == str(ROOT / "configs" / "accelerate" / "zero2.yaml")


@pytest.mark.slow
def test_train_stage_under_accelerate_in_two_processes(standins, tmp_path):
    """`accelerate launch --num_processes 2 -m frpo_nb.paper train ...` on CPU (gloo): FRPO's groups span both processes."""
    launch = tmp_path / "cpu2.yaml"   # MULTI_GPU without GPUs runs on CPU with gloo; `--cpu` would start one process
    launch.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\nnum_processes: 2\n"
                      "machine_rank: 0\nmixed_precision: 'no'\nrdzv_backend: static\nsame_network: true\nuse_cpu: false\n"
                      "main_training_function: main\ngpu_ids: all\ndowncast_bf16: 'no'\ndebug: false\n")
    cfg = load_config(ROOT / "configs" / "paper-math-qwen.yaml")
    params = _job(cfg, "train", method="frpo", lamb=1.0).params | CPU_OVERRIDES["train"] | {
        "run_dir": str(tmp_path / "run"), "model": standins["model"], "train_data": standins["math_data"], "val_size": 4,
        "num_processes": 2, "accelerate_config": str(launch), "per_device_train_batch_size": 2, "num_generations": 4}
    env = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env]))
    try: m = run_stage("train", params)
    finally: os.environ["PYTHONPATH"] = env
    assert m["processes"] == 2 and m["steps"] == 2 and m["effective_config"]["frpo_lambda"] == 1.0
    assert (tmp_path / "run" / "policy" / "config.json").is_file()
