"""One FRPO optimizer step (SGD) on a fixed, scripted batch; run by 1 process or by `torchrun` with several.

    python tests/multiproc_step.py MODEL_DIR OUT.pt [CONFIGS_JSON]
    torchrun --nproc_per_node 2 tests/multiproc_step.py MODEL_DIR OUT.pt [CONFIGS_JSON]

Generation is replaced by `scripted_rollout` (TRL's `rollout_func` hook): the completion of the global row r
of a generation batch is a pseudo-random token sequence seeded by r. TRL's sampler orders the global batch
the same way for any number of processes (each process takes a contiguous slice), so one process and
several see exactly the same completions, rewards and groups; everything after generation — rewards,
advantages, group ids, shuffles, the cross-process loss, DDP gradient averaging, the SGD step — is the real
code. Each entry of CONFIGS_JSON is a dict of FRPOConfig overrides ("name" labels it; an entry with "sam_rho" trains
with SAMGRPOConfig/SAMGRPOTrainer, SAM around the entry's loss); for each, process 0 writes the parameter updates
(after - before) into OUT.pt under that name. Finally, a check of the
cross-process loss alone: every process evaluates `frpo_loss` on its slice of one fixed random batch
with accelerate's `gather`, gradients are averaged as DDP does, and process 0 records the largest
difference to the single-process `frpo_loss` gradient of the whole batch under "loss_only_max_err".
"""
import json
import os
import sys
import tempfile
import warnings

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from accelerate import PartialState  # noqa: E402
from accelerate.utils import gather  # noqa: E402
from datasets import Dataset  # noqa: E402

from frpo_nb.loss import frpo_loss  # noqa: E402
from frpo_nb.testing import random_frpo_batch  # noqa: E402
from frpo_nb.trainer import FRPOConfig, FRPOTrainer, SAMGRPOConfig, SAMGRPOTrainer  # noqa: E402

WORDS = "apple banana cherry dog egg fig grape house ice jam kite lemon".split()
PROMPTS = Dataset.from_dict({"prompt": [[{"role": "user", "content": f"{a} {b}"}] for a in WORDS for b in WORDS[:2]]})
DEFAULT_CONFIGS = [  # FRPOConfig overrides; "global_batch" = completions per optimizer step over all processes
    dict(name="k4"),
    dict(name="k4_accumulation2", gradient_accumulation_steps=2),
    dict(name="k8_group_spans_processes", num_generations=8, global_batch=8),
    dict(name="k4_lambda0.1_beta_nojackknife", frpo_lambda=0.1, beta=0.05, jackknife=False),
    dict(name="sam_grpo", loss_type="grpo", sam_rho=0.05, beta=0.1),            # SAM-GRPO (TRL's loss)
    dict(name="sam_grpo_accumulation2", loss_type="grpo", sam_rho=0.05, beta=0.1, gradient_accumulation_steps=2),
    dict(name="sam_frpo", loss_type="frpo", sam_rho=0.05),                      # FRPO + SAM (λ = 0.2, as k4)
]


def even_token_share(completions, completion_ids, **kwargs):
    "Toy reward: the share of completion tokens whose id is even."
    return [sum(t % 2 == 0 for t in ids) / max(len(ids), 1) for ids in completion_ids]


def scripted_rollout(prompts, trainer, max_len: int = 8):
    "TRL rollout_func: a completion determined by the global row index only (same for any number of processes)."
    tok = trainer.processing_class
    prompt_ids = [tok.apply_chat_template(p, add_generation_prompt=True, return_dict=True)["input_ids"] for p in prompts]
    first = trainer.accelerator.process_index * len(prompts) + trainer.state.global_step * 100_000
    completion_ids = []
    for r in range(first, first + len(prompts)):
        g = torch.Generator().manual_seed(r)
        n = int(torch.randint(1, max_len, (1,), generator=g))
        completion_ids.append(torch.randint(3, len(tok), (n,), generator=g).tolist() + [tok.eos_token_id])
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def one_step_config(world: int, overrides: dict) -> FRPOConfig:
    "An SGD, no-clipping, one-step CPU config (a SAMGRPOConfig when `sam_rho` is given); `overrides['global_batch']` (default 16) counts all completions."
    ga, global_batch = overrides.get("gradient_accumulation_steps", 1), overrides.get("global_batch", 16)
    kw = dict(output_dir=tempfile.mkdtemp(prefix="frpo_mp_"), use_cpu=True, bf16=False, gradient_checkpointing=False,
              report_to="none", dataloader_pin_memory=False, save_strategy="no", disable_tqdm=True, seed=0,
              per_device_train_batch_size=global_batch // (world * ga), num_generations=4, max_completion_length=8,
              max_steps=1, optim="sgd", learning_rate=0.5, frpo_lambda=0.2, lr_scheduler_type="constant", max_grad_norm=0.0,
              ddp_find_unused_parameters=False, logging_steps=1,
              model_init_kwargs={"dtype": torch.float64})  # float64: rounding noise far below the 1e-5 tolerance
    config_cls = SAMGRPOConfig if "sam_rho" in overrides else FRPOConfig
    return config_cls(**(kw | {k: v for k, v in overrides.items() if k not in ("name", "global_batch")}))


def one_step_update(model_dir, overrides: dict, world: int = 1) -> dict:
    "Parameter updates (after - before) of one FRPO (or SAM) optimizer step with scripted generation."
    args = one_step_config(world, overrides)
    trainer_cls = SAMGRPOTrainer if isinstance(args, SAMGRPOConfig) else FRPOTrainer
    trainer = trainer_cls(model=str(model_dir), reward_funcs=even_token_share, args=args, train_dataset=PROMPTS,
                          rollout_func=scripted_rollout)
    model = trainer.accelerator.unwrap_model(trainer.model)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {k: (v.detach() - before[k]).cpu() for k, v in model.named_parameters()}


def loss_only_max_err(process_index: int, world: int) -> float:
    "Largest |DDP-averaged gradient of frpo_loss - single-process frpo_loss gradient| on a fixed batch."
    batch = random_frpo_batch([4] * 6, T=9, seed=11, shuffle=False)        # 24 rows: slices cut groups when world=3
    kw = dict(lamb=0.5, old_per_token_logps=batch["old_per_token_logps"], ref_per_token_logps=batch["ref_per_token_logps"],
              beta=0.1)
    logits = batch["logits"].detach().clone().requires_grad_(True)
    frpo_loss(torch.nn.functional.logsigmoid(logits), batch["completion_mask"], batch["advantages"],
              batch["group_ids"], **kw)[0].backward()
    rows = torch.arange(24).chunk(world)[process_index]
    local = batch["logits"].detach().clone().requires_grad_(True)
    sliced = {k: v[rows] for k, v in kw.items() if isinstance(v, torch.Tensor)}
    loss, _ = frpo_loss(torch.nn.functional.logsigmoid(local[rows]), batch["completion_mask"][rows],
                               batch["advantages"][rows], batch["group_ids"][rows], lamb=0.5, beta=0.1,
                               gather=gather if world > 1 else None, process_index=process_index, **sliced)
    loss.backward()
    grad = local.grad
    if world > 1:
        dist.all_reduce(grad)
        grad /= world
    return (grad - logits.grad).abs().max().item()


def main(model_dir, out, configs=None):
    state = PartialState(cpu=True)  # CPU script: without cpu=True, torchrun on a CPU-only machine gives world 1
    world = state.num_processes
    results = {c["name"]: one_step_update(model_dir, c, world=world) for c in (configs or DEFAULT_CONFIGS)}
    results["loss_only_max_err"] = loss_only_max_err(state.process_index, world)
    if state.is_main_process: torch.save(results, out)
    state.wait_for_everyone()
    if world > 1: dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else None)
