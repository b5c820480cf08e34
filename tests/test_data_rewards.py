"""frpo_nb.data and frpo_nb.rewards together: the authors' released files (skipped where absent), TRL's dataset
formats, and short TRL runs (GRPO with each setting's rewards, SFT on the warm-up corpus) on a tiny model."""
import math
from collections import Counter
from pathlib import Path

import pytest

from frpo_nb.data import (TASKS, base_sft_corpus, load_kl_eval_prompts, load_safety_prompts, tiny_code, tiny_corpus,
                          tiny_gsm8k, tiny_instructions, tiny_math, tiny_safety_prompts, tiny_word_task)
from frpo_nb.rewards import (MATH_REWARD_WEIGHTS, helpfulness_reward, math_correct_reward, math_format_reward,
                             safety_reward, word_task_reward)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "safety_train_prompts.parquet").exists(),
                                  reason=f"{SHARED} is absent (the authors' released files are not part of the package)")


@needs_shared
def test_released_safety_prompts():
    ds = load_safety_prompts(SHARED / "safety_train_prompts.parquet")
    assert (ds["train"].num_rows, ds["validation"].num_rows) == (1950, 50)
    assert Counter(ds["validation"]["task"]) == Counter({"safety": 25, "normal": 25})
    abilities = Counter(ds["train"]["ability"]) + Counter(ds["validation"]["ability"])
    assert abilities == Counter({"refusal": 1000, "wildjailbreak": 413, "rainbow": 391, "aegis": 196})
    assert all(t == ("normal" if a == "refusal" else "safety") for t, a in zip(ds["train"]["task"], ds["train"]["ability"]))
    assert all(len(p) == 1 and p[0]["role"] == "user" and p[0]["content"] for p in ds["train"]["prompt"])
    assert not {p[0]["content"] for p in ds["train"]["prompt"]} & {p[0]["content"] for p in ds["validation"]["prompt"]}


@needs_shared
@pytest.mark.parametrize("task", TASKS)
def test_released_kl_eval_prompts(task):
    ds = load_kl_eval_prompts(SHARED / f"kl_eval_{task}_prompts.jsonl")
    assert ds.num_rows == 1000 and set(ds["task"]) == {task}
    assert all(p[0]["role"] == "user" and p[0]["content"] for p in ds["prompt"])


def test_tiny_datasets_are_trl_conversational():
    from trl.data_utils import is_conversational
    rl = [*tiny_safety_prompts().values(), *tiny_math(n_per_level=10).values(), *tiny_word_task().values()]
    sft = [base_sft_corpus(n_math=10), tiny_instructions(), tiny_gsm8k(n_per_level=5), tiny_code()]
    for ds in rl + sft:
        assert all(is_conversational(row) for row in ds), ds
    for ds in sft:
        assert all(c[0]["role"] == "assistant" and len(c) == 1 for c in ds["completion"])


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    from frpo_nb.tiny import build_tiny
    return str(build_tiny(tmp_path_factory.mktemp("tiny"), tiny_corpus(), hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2))


SETTINGS = {"safety": (lambda: tiny_safety_prompts()["train"], [safety_reward, helpfulness_reward], None),
            "math": (lambda: tiny_math(n_per_level=20)["train"], [math_format_reward, math_correct_reward],
                     list(MATH_REWARD_WEIGHTS)),
            "words": (lambda: tiny_word_task()["train"], [word_task_reward], None)}


@pytest.mark.parametrize("setting", SETTINGS)
def test_grpo_runs_with_each_settings_rewards(setting, tiny_model_path, tmp_path):
    from trl import GRPOConfig, GRPOTrainer
    dataset, rewards, weights = SETTINGS[setting]
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=16, num_generations=4,
                      max_completion_length=24, learning_rate=1e-4, logging_steps=1, report_to="none", use_cpu=True,
                      bf16=False, gradient_checkpointing=False, save_strategy="no", beta=0.0, seed=0,
                      reward_weights=weights, dataloader_pin_memory=False)
    trainer = GRPOTrainer(model=tiny_model_path, reward_funcs=rewards, args=args, train_dataset=dataset())
    trainer.train()
    logs = [l for l in trainer.state.log_history if "reward" in l]
    assert len(logs) == 3 and all(math.isfinite(l["reward"]) for l in logs)
    for fn in rewards:  # TRL logs each reward under its __name__
        assert any(math.isfinite(l[f"rewards/{fn.__name__}/mean"]) for l in logs)


def test_sft_runs_on_the_warm_up_corpus(tiny_model_path, tmp_path):
    from trl import SFTConfig, SFTTrainer
    args = SFTConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=16, learning_rate=1e-3,
                     logging_steps=1, report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False,
                     save_strategy="no", seed=0, dataloader_pin_memory=False)
    trainer = SFTTrainer(model=tiny_model_path, args=args, train_dataset=base_sft_corpus())
    trainer.train()
    losses = [l["loss"] for l in trainer.state.log_history if "loss" in l]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
