"""Integration tests of frpo_nb.trainer on a tiny CPU model: one vs two processes (torchrun), gradient accumulation,
learning on a toy reward, and parity with TRL's GRPOTrainer for TRL's own loss types; the same for SAM (SAMGRPOTrainer).

The one-vs-two-process tests run tests/multiproc_step.py, which replaces sampling by a completion fixed by each
row's global index (see its docstring), so both setups see the same batch; everything else is the real trainer.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multiproc_step as mp  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from frpo_nb.tiny import build_tiny  # noqa: E402
from frpo_nb.trainer import FRPOConfig, FRPOTrainer, SAMGRPOConfig, SAMGRPOTrainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)
CPU = dict(use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none", dataloader_pin_memory=False,
           save_strategy="no", disable_tqdm=True, seed=0, num_generations=4, max_completion_length=8)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    "These models are tiny: one thread is as fast, and on a shared 2-core box 2 threads can be 10x slower."
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    corpus = [" ".join(mp.WORDS[(i * j) % 12] for j in range(1, 8)) for i in range(200)]
    return build_tiny(tmp_path_factory.mktemp("tiny") / "model", corpus, vocab_size=300, hidden_size=64,
                      intermediate_size=128, num_hidden_layers=2)


def run_step_script(model, out, n_proc):
    launcher = [str(BIN / "torchrun"), "--nproc_per_node", str(n_proc)] if n_proc > 1 else [sys.executable]
    res = subprocess.run(launcher + [str(ROOT / "tests" / "multiproc_step.py"), str(model), str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, f"{n_proc} process(es) failed:\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}"
    return torch.load(out)


@pytest.fixture(scope="module")
def one_process(tiny_model, tmp_path_factory):
    return run_step_script(tiny_model, tmp_path_factory.mktemp("one") / "updates.pt", 1)


@pytest.fixture(scope="module")
def two_processes(tiny_model, tmp_path_factory):
    return run_step_script(tiny_model, tmp_path_factory.mktemp("two") / "updates.pt", 2)


def norm(update): return torch.sqrt(sum((v.double() ** 2).sum() for v in update.values())).item()


def rel_diff(a, b):
    "||a - b|| / ||a|| over all parameters of two update dicts."
    assert a.keys() == b.keys()
    return norm({k: a[k] - b[k] for k in a}) / norm(a)


@pytest.mark.parametrize("name", [c["name"] for c in mp.DEFAULT_CONFIGS])
def test_two_processes_give_the_one_process_update(one_process, two_processes, name):
    "Same initial weights, same global batch, SGD: the update of 2 gloo processes equals the 1-process update."
    assert norm(one_process[name]) > 1e-2                      # a real update, not two zeros
    assert rel_diff(one_process[name], two_processes[name]) <= 1e-5


def test_cross_process_loss_on_a_fixed_batch(one_process, two_processes):
    "frpo_loss with accelerate's gather, DDP-averaged over 2 processes = frpo_loss on the whole batch."
    assert one_process["loss_only_max_err"] <= 1e-12
    assert two_processes["loss_only_max_err"] <= 1e-12


def test_accumulation_2_gives_the_update_of_1(one_process, two_processes):
    "Gradient accumulation 2 (two micro-batches of whole groups) vs 1, same global batch: same update."
    assert rel_diff(one_process["k4"], one_process["k4_accumulation2"]) <= 1e-5
    assert rel_diff(one_process["k4"], two_processes["k4_accumulation2"]) <= 1e-5


def sgd_update(model, trainer_cls=FRPOTrainer, config_cls=FRPOConfig, **kw):
    "Parameter update of one SGD step with sampled generation, and the completions that were sampled."
    seen = []

    def reward(completions, completion_ids, **kwargs):
        seen.extend(map(tuple, completion_ids))
        return mp.even_token_share(completions, completion_ids)

    args = config_cls(**(CPU | dict(output_dir=tempfile.mkdtemp(), max_steps=1, optim="sgd", learning_rate=0.5,
                                    lr_scheduler_type="constant", max_grad_norm=0.0, frpo_lambda=0.5) | kw))
    trainer = trainer_cls(model=str(model), reward_funcs=reward, args=args, train_dataset=mp.PROMPTS)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    return {k: v.detach() - before[k] for k, v in trainer.model.named_parameters()}, sorted(seen)


def test_accumulation_with_sampled_generation(tiny_model):
    "Same as above with TRL's own (sampled) generation: one generate call of 16, split 8 + 8 or not split."
    one, seen1 = sgd_update(tiny_model, per_device_train_batch_size=16)
    two, seen2 = sgd_update(tiny_model, per_device_train_batch_size=8, gradient_accumulation_steps=2)
    assert seen1 == seen2 and len(seen1) == 16                  # the same sampled completions
    assert norm(one) > 1e-2
    assert rel_diff(one, two) <= 1e-5


def test_sam_accumulation_2_gives_the_update_of_1(one_process, two_processes):
    "SAM's direction is the optimizer step's global batch: accumulation 2 = 1, on one process and on two (torchrun)."
    assert norm(one_process["sam_grpo"]) > 1e-2
    assert rel_diff(one_process["sam_grpo"], one_process["sam_grpo_accumulation2"]) <= 1e-5
    assert rel_diff(one_process["sam_grpo"], two_processes["sam_grpo_accumulation2"]) <= 1e-5


def test_sam_changes_the_update(one_process):
    "FRPO + SAM is not FRPO: the gradient is taken at the perturbed weights (same batch, λ, SGD step)."
    assert rel_diff(one_process["k4"], one_process["sam_frpo"]) > 1e-3


@pytest.mark.parametrize("loss_type", ["grpo", "frpo"])
def test_sam_accumulation_with_sampled_generation(tiny_model, loss_type):
    "SAM with TRL's sampled generation: one generate call of 16, trained as 8 + 8 or as 16, gives the same update."
    kw = dict(loss_type=loss_type, sam_rho=0.05, beta=0.1)
    one, seen1 = sgd_update(tiny_model, SAMGRPOTrainer, SAMGRPOConfig, per_device_train_batch_size=16, **kw)
    two, seen2 = sgd_update(tiny_model, SAMGRPOTrainer, SAMGRPOConfig, per_device_train_batch_size=8,
                            gradient_accumulation_steps=2, **kw)
    plain, _ = sgd_update(tiny_model, per_device_train_batch_size=16, loss_type=loss_type, beta=0.1)
    assert seen1 == seen2 and len(seen1) == 16
    assert norm(one) > 1e-2 and rel_diff(one, plain) > 1e-3      # SAM's update is not the plain one
    assert rel_diff(one, two) <= 1e-5


def test_without_group_level_split_accumulation_fails_loudly(tiny_model):
    "TRL's row-level shuffle alone splits groups across micro-batches: the loss says so instead of training wrong."
    class RowShuffleOnly(FRPOTrainer):
        _prepare_inputs = GRPOTrainer._prepare_inputs

    with pytest.raises(ValueError, match="expected group_size=4.*split groups across micro-batches"):
        sgd_update(tiny_model, RowShuffleOnly, per_device_train_batch_size=8, gradient_accumulation_steps=4)


@pytest.mark.parametrize("lamb", [0.2, 2.0])
def test_frpo_learns_a_toy_reward(tiny_model, lamb):
    "30 FRPO steps (AdamW) raise the share of even token ids from ~0.55 clearly upwards."
    args = FRPOConfig(**(CPU | dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=16, max_steps=30,
                                    learning_rate=1e-2, frpo_lambda=lamb, logging_steps=1)))
    trainer = FRPOTrainer(model=str(tiny_model), reward_funcs=mp.even_token_share, args=args, train_dataset=mp.PROMPTS)
    trainer.train()
    rewards = [log["reward"] for log in trainer.state.log_history if "reward" in log]
    assert len(rewards) == 30
    start, end = statistics.mean(rewards[:5]), statistics.mean(rewards[-5:])
    assert end >= start + 0.2, (start, end, rewards)
    assert all(log["frpo/lambda"] == lamb for log in trainer.state.log_history if "reward" in log)


PARITY = [("grpo", {}), ("grpo", {"beta": 0.1}), ("dapo", {}), ("bnpo", {}), ("dr_grpo", {}), ("cispo", {}),
          ("sapo", {}), ("luspo", {"importance_sampling_level": "sequence"}), ("vespo", {})]


@pytest.mark.parametrize("loss_type,extra", PARITY, ids=[f"{lt}{'-' + '-'.join(e) if e else ''}" for lt, e in PARITY])
def test_trl_loss_types_match_grpo_trainer(tiny_model, loss_type, extra):
    "With TRL's own loss types FRPOTrainer is GRPOTrainer: same loss and gradients on the same inputs."
    kw = CPU | dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=8, loss_type=loss_type) | extra
    grpo = GRPOTrainer(model=str(tiny_model), reward_funcs=mp.even_token_share, args=GRPOConfig(**kw),
                       train_dataset=mp.PROMPTS)
    frpo = FRPOTrainer(model=str(tiny_model), reward_funcs=mp.even_token_share, args=FRPOConfig(**kw),
                       train_dataset=mp.PROMPTS)
    for t in (grpo, frpo):
        t.model.train()
        t.current_gradient_accumulation_steps = 1
    batch = frpo._generate_and_score_completions([mp.PROMPTS[i] for i in (0, 0, 0, 0, 7, 7, 7, 7)])
    losses = []
    for t in (grpo, frpo):
        loss = t.compute_loss(t.model, batch)
        loss.backward()
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])
    for (name, a), b in zip(grpo.model.named_parameters(), frpo.model.parameters()):
        assert a.grad is not None and torch.equal(a.grad, b.grad), name
    assert any(a.grad.abs().sum() > 0 for a in grpo.model.parameters())


def test_grpo_training_matches_grpo_trainer(tiny_model):
    "Two AdamW steps with sampled generation and accumulation 2: FRPOTrainer(loss_type='grpo') = GRPOTrainer."
    kw = CPU | dict(per_device_train_batch_size=8, gradient_accumulation_steps=2, max_steps=2, learning_rate=1e-2,
                    loss_type="grpo")
    models = []
    for trainer_cls, config_cls in ((GRPOTrainer, GRPOConfig), (FRPOTrainer, FRPOConfig)):
        trainer = trainer_cls(model=str(tiny_model), reward_funcs=mp.even_token_share, train_dataset=mp.PROMPTS,
                              args=config_cls(**(kw | dict(output_dir=tempfile.mkdtemp()))))
        trainer.train()
        models.append(trainer.model)
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("name,kind,stage", [("ddp", "MULTI_GPU", None), ("zero2", "DEEPSPEED", 2),
                                             ("zero3", "DEEPSPEED", 3)])
def test_accelerate_configs_load(name, kind, stage):
    from accelerate.commands.config.config_args import load_config_from_file
    cfg = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.distributed_type.name == kind and cfg.mixed_precision == "bf16"
    assert cfg.deepspeed_config.get("zero_stage") == stage


def test_trainer_samples_through_decode(tiny_model, monkeypatch):
    "FRPOTrainer's rollouts go through frpo_nb.decoding.decode, and the step is the one generate's samples give."
    import frpo_nb.decoding as dec
    calls, real = [], dec.decode
    monkeypatch.setattr(dec, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    fast, seen_fast = sgd_update(tiny_model, per_device_train_batch_size=8)
    assert len(calls) >= 1
    monkeypatch.setattr("frpo_nb.trainer.fast_generate", lambda model: False)     # plain model.generate
    plain, seen_plain = sgd_update(tiny_model, per_device_train_batch_size=8)
    assert len(calls) == 1 and seen_fast == seen_plain
    assert all(torch.equal(fast[k], plain[k]) for k in fast) and norm(fast) > 0
