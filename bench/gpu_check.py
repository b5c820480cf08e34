"""FRPO vs GRPO on one GPU: training-step time, peak memory, generation speed, and the loss at paper scale.

    make gpu-check                                  # = python3 bench/gpu_check.py  (about 2-4 min on one H100/H200)
    python3 bench/gpu_check.py --cpu --tiny         # the same code on CPU with a tiny model (CI: tests/test_gpu_check.py)

Needs only torch (CUDA build) on the machine: the package is not installed, its loss (frpo_nb/loss.py, torch only)
is imported from this checkout, and the model is a Qwen2 of about 0.5 B parameters (Qwen2.5-0.5B's shape) built
from a config with random weights, no download: transformers' Qwen2ForCausalLM when transformers is importable,
else a plain-torch Qwen2 of the same shape (--impl). bf16 on the GPU, float32 on CPU. Measured:

- training step: forward of `groups × k` sequences (prompt + completion), per-token log-probs, the loss (FRPO,
  `frpo_loss`, or GRPO's clipped surrogate, `grpo_surrogate`), backward, AdamW (learning rate 0: both see the same
  weights). FRPO and GRPO alternate, the order flipping every repetition, as bench/bench_trainer.py does; the
  ratio is the median of the paired per-repetition ratios (robust to other load).
- peak GPU memory of one step of each (torch.cuda.max_memory_allocated).
- generation: tokens/s of sampling `--gen-batch` prompts for `--gen-tokens` new tokens with the KV cache.
- the loss alone at G = 256 groups, k = 8, T = 4096 tokens (float32 log-probs, the trainer's dtype): forward +
  backward time of FRPO vs the GRPO surrogate (paired, interleaved), and the peak memory of each.

The trainers' stage (`--stage trainers`, or `all`: the default where TRL and this package are importable) runs the
real trainers on the same machine's torch: `FRPOTrainer` (λ = 1) against TRL's `GRPOTrainer` on the ≈ 0.5 B Qwen2
(bf16, SDPA, generation by transformers, not vLLM; learning rate 0, so both train the same weights): the step-time
ratio of whole training steps (generation, rewards, loss, backward, AdamW), interleaved as above, and each one's peak
memory; one LoRA SAM-GRPO step (`SAMGRPOTrainer`, ρ = 0.05, r = 16); and the tiny pipeline on the device: the base
policy's warm-up, an FRPO run, an SFT fine-tune with its curve, and the evaluation of the result. On a bare, offline
GPU node (CUDA torch, transformers, accelerate, peft; no trl, datasets or papermill) install `make gpu-kit`'s
wheels first: `pip install --no-index --no-deps gpu-kit/*.whl` (tools/gpu_kit.py).

Prints one summary line last (and writes all numbers as JSON with --out). Exit 1 when a check fails: a loss
that is not finite, a FRPO/GRPO step ratio above --max-ratio, or a trainers' stage that fails.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import tempfile
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "frpo_nb" / "loss.py").is_file(): sys.path.insert(0, str(ROOT))   # this checkout's frpo_nb, not an installed one
from frpo_nb.loss import frpo_loss, grpo_surrogate  # noqa: E402


@dataclass(frozen=True)
class Shape:
    "A Qwen2 decoder's shape (Qwen2.5-0.5B: 494 M parameters, embeddings tied)."
    vocab: int = 151936
    hidden: int = 896
    layers: int = 24
    heads: int = 14
    kv_heads: int = 2
    intermediate: int = 4864
    rope_theta: float = 1_000_000.0
    eps: float = 1e-6


QWEN2_05B = Shape()
TINY = Shape(vocab=256, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128)


# ---- a plain-torch Qwen2 (used when transformers is missing) -------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        v = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(v + self.eps)).to(x.dtype) * self.weight


def rotate(x, pos, theta):
    "Rotary position embedding (Qwen2/Llama layout: halves) of x [B, H, T, D] at positions pos [T]."
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    ang = pos.float()[:, None] * inv[None]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype), torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Block(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        hd = s.hidden // s.heads
        self.s, self.hd = s, hd
        self.q_proj, self.k_proj = nn.Linear(s.hidden, s.heads * hd), nn.Linear(s.hidden, s.kv_heads * hd)
        self.v_proj, self.o_proj = nn.Linear(s.hidden, s.kv_heads * hd), nn.Linear(s.heads * hd, s.hidden, bias=False)
        self.gate, self.up = nn.Linear(s.hidden, s.intermediate, bias=False), nn.Linear(s.hidden, s.intermediate, bias=False)
        self.down = nn.Linear(s.intermediate, s.hidden, bias=False)
        self.ln1, self.ln2 = RMSNorm(s.hidden, s.eps), RMSNorm(s.hidden, s.eps)

    def forward(self, x, pos, cache=None):
        B, T, _ = x.shape
        h = self.ln1(x)
        q = self.q_proj(h).view(B, T, self.s.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.s.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.s.kv_heads, self.hd).transpose(1, 2)
        q, k = rotate(q, pos, self.s.rope_theta), rotate(k, pos, self.s.rope_theta)
        if cache is not None:
            if cache: k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        rep = self.s.heads // self.s.kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        x = x + self.o_proj(a.transpose(1, 2).reshape(B, T, -1))
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class TorchQwen2(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.embed = nn.Embedding(s.vocab, s.hidden)
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.layers))
        self.norm = RMSNorm(s.hidden, s.eps)

    def forward(self, ids, caches=None, start=0):
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = self.embed(ids)
        for i, b in enumerate(self.blocks): x = b(x, pos, None if caches is None else caches[i])
        return self.norm(x) @ self.embed.weight.T                   # tied embeddings

    @torch.no_grad()
    def sample(self, ids, new_tokens):
        caches = [[] for _ in self.blocks]
        logits = self(ids, caches)[:, -1]
        out = []
        for t in range(new_tokens):
            nxt = torch.multinomial(logits.float().softmax(-1), 1)
            out.append(nxt)
            logits = self(nxt, caches, ids.shape[1] + t)[:, -1]
        return torch.cat([ids, *out], 1)


# ---- the model, either way -------------------------------------------------------------------------------------
def build(shape: Shape, impl: str, device: str, dtype):
    "(model, impl used, n_parameters): a Qwen2 of `shape` with random weights on `device` in `dtype`."
    if impl in ("auto", "transformers"):
        try:
            from transformers import Qwen2Config, Qwen2ForCausalLM
        except ImportError:
            if impl == "transformers": raise
        else:
            cfg = Qwen2Config(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                              num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                              num_key_value_heads=shape.kv_heads, rope_theta=shape.rope_theta, rms_norm_eps=shape.eps,
                              max_position_embeddings=32768, tie_word_embeddings=True, use_cache=True,
                              attn_implementation="sdpa")
            with torch.device(device): model = Qwen2ForCausalLM(cfg).to(dtype)
            model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, None
            return model, "transformers", sum(p.numel() for p in model.parameters())
    with torch.device(device): model = TorchQwen2(shape).to(dtype)
    return model, "torch", sum(p.numel() for p in model.parameters())


def logits_of(model, ids):
    out = model(ids)
    return out.logits if hasattr(out, "logits") else out


def completion_logps(model, ids, prompt_len):
    "Per-token log-probs [B, C] of the completion tokens ids[:, prompt_len:] (float32, as the trainer computes them)."
    logits = logits_of(model, ids)[:, prompt_len - 1:-1].float()
    return torch.gather(logits.log_softmax(-1), -1, ids[:, prompt_len:, None])[..., 0]


def group_batch(groups, k, T, device, seed=0, min_len=None):
    "Mask [B, T] of random completion lengths, group-centred advantages [B] and group ids [B], B = groups × k."
    g = torch.Generator().manual_seed(seed)
    B = groups * k
    lengths = torch.randint(min_len or max(1, T // 4), T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).float()
    rewards = torch.rand(groups, k, generator=g)
    adv = (rewards - rewards.mean(1, keepdim=True)).flatten()
    ids = torch.arange(groups).repeat_interleave(k)
    return mask.to(device), adv.to(device), ids.to(device)


def sync(device):
    if device == "cuda": torch.cuda.synchronize()


def paired(fn, names, reps, warmup, device):
    "Times of fn(name) per name, alternating which goes first every repetition; peak memory per name (CUDA)."
    times, peak = {n: [] for n in names}, {n: 0 for n in names}
    for rep in range(warmup + reps):
        for n in (names if rep % 2 == 0 else names[::-1]):
            if device == "cuda": torch.cuda.reset_peak_memory_stats()
            sync(device)
            t0 = time.perf_counter()
            fn(n)
            sync(device)
            if rep >= warmup: times[n].append(time.perf_counter() - t0)
            if device == "cuda": peak[n] = max(peak[n], torch.cuda.max_memory_allocated())
    ratio = statistics.median(a / b for a, b in zip(times[names[0]], times[names[1]]))
    return times, peak, ratio


def losses(kind, logps, mask, adv, ids, lamb):
    old = logps.detach()
    if kind == "frpo": return frpo_loss(logps, mask, adv, ids, lamb=lamb, old_per_token_logps=old)[0]
    return grpo_surrogate(logps, mask, adv, old_per_token_logps=old)


# ---- the trainers' stage: FRPOTrainer vs GRPOTrainer, a LoRA SAM-GRPO step, the tiny pipeline ------------------
def trainers_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("trl", "datasets", "transformers", "peft"))


def trainers_stage(device: str, tiny: bool, groups: int, k: int, P: int, C: int, reps: int, warmup: int,
                   lamb: float) -> dict:
    "Run the real trainers on `device`; return their numbers (see the module's docstring)."
    import random
    import warnings
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import Qwen2Config, Qwen2ForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer
    from frpo_nb.data import tiny_corpus
    from frpo_nb.tiny import build_tiny_tokenizer
    from frpo_nb.trainer import FRPOConfig, FRPOTrainer, SAMGRPOConfig, SAMGRPOTrainer
    import datasets
    import transformers
    warnings.filterwarnings("ignore", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    cpu, t_stage = device == "cpu", time.time()
    tok = build_tiny_tokenizer(tiny_corpus(), vocab_size=512)
    shape = Shape(vocab=len(tok), hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128) if tiny else QWEN2_05B
    cfg = Qwen2Config(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                      num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                      rope_theta=shape.rope_theta, rms_norm_eps=shape.eps, max_position_embeddings=32768,
                      tie_word_embeddings=True, attn_implementation="sdpa", pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    with torch.device(device): model = Qwen2ForCausalLM(cfg).to(torch.float32 if cpu else torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    rng = random.Random(0)                  # prompts of P tokens of the tokenizer's own vocabulary (no chat template)
    data = Dataset.from_dict({"prompt": [tok.decode([rng.randrange(5, len(tok)) for _ in range(P)]) for _ in range(64)]})

    def reward(completions, **kw):          # varies within a group, so advantages are not zero
        return [(len(c) % 7) / 6 for c in completions]

    class StepTimer(TrainerCallback):
        times: list = []

        def on_step_begin(self, args, state, control, **kw):
            sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync(device)
            self.times.append(time.perf_counter() - self.t0)

    timer, out = StepTimer(), tempfile.mkdtemp(prefix="gpu_check_")
    common = dict(output_dir=out, per_device_train_batch_size=groups * k, num_generations=k, max_completion_length=C,
                  beta=0.0, logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True, seed=0,
                  use_vllm=False, gradient_checkpointing=False, use_cpu=cpu, bf16=not cpu, dataloader_pin_memory=not cpu)
    steps = 2 if tiny else 3                # per train() call; its first step (optimizer creation) is not timed
    trainers = {"frpo": FRPOTrainer(model=model, reward_funcs=reward, train_dataset=data, processing_class=tok,
                                    args=FRPOConfig(loss_type="frpo", frpo_lambda=lamb, learning_rate=0.0, max_steps=steps,
                                                    **common), callbacks=[timer]),
                "grpo": GRPOTrainer(model=model, reward_funcs=reward, train_dataset=data, processing_class=tok,
                                    args=GRPOConfig(loss_type="grpo", scale_rewards="group", learning_rate=0.0,
                                                    max_steps=steps, **common), callbacks=[timer])}

    def run(name):
        t = trainers[name]
        timer.times = []
        t.train()
        t.optimizer = t.lr_scheduler = None                    # the next call starts from the same state
        gc.collect()
        return statistics.mean(timer.times[1:]), [r["loss"] for r in t.state.log_history if "loss" in r]

    times, peak, finals = {n: [] for n in trainers}, {n: 0 for n in trainers}, {}
    for rep in range(warmup + reps):
        for name in (["frpo", "grpo"] if rep % 2 == 0 else ["grpo", "frpo"]):
            if not cpu: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
            dt, losses_ = run(name)
            finals[name] = losses_
            if rep >= warmup: times[name].append(dt)
            if not cpu: peak[name] = max(peak[name], torch.cuda.max_memory_allocated())
    ratio = statistics.median(a / b for a, b in zip(times["frpo"], times["grpo"]))
    med = {n: statistics.median(v) for n, v in times.items()}
    print(f"  trainers: FRPOTrainer {med['frpo'] * 1e3:.0f} ms/step, GRPOTrainer {med['grpo'] * 1e3:.0f} ms/step; paired "
          f"FRPO/GRPO {ratio:.3f}; peak memory {peak['frpo'] / 2**30:.2f} / {peak['grpo'] / 2**30:.2f} GiB", flush=True)
    del trainers
    gc.collect()

    # one LoRA SAM-GRPO step (the ascent pass and the update pass), on the same model (peft wraps it: last)
    if not cpu: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    sam_args = SAMGRPOConfig(loss_type="grpo", scale_rewards="group", sam_rho=0.05, learning_rate=1e-5, max_steps=2, **common)
    sam = SAMGRPOTrainer(model=model, reward_funcs=reward, train_dataset=data, processing_class=tok, args=sam_args,
                         callbacks=[timer],
                         peft_config=LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                                task_type="CAUSAL_LM"))
    timer.times = []
    sam.train()
    logs = [r for r in sam.state.log_history if "sam/grad_norm" in r]
    sam_rec = {"ms": timer.times[-1] * 1e3, "peak_gib": (torch.cuda.max_memory_allocated() / 2**30) if not cpu else 0.0,
               "loss": [r["loss"] for r in sam.state.log_history if "loss" in r],
               "ascent_norm": logs[-1]["sam/ascent_norm"] if logs else math.nan,
               "trainable": sum(p.numel() for p in sam.model.parameters() if p.requires_grad)}
    print(f"  LoRA SAM-GRPO: {sam_rec['ms']:.0f} ms/step, {sam_rec['trainable'] / 1e6:.3g} M trainable, ascent norm "
          f"{sam_rec['ascent_norm']:.3g}, peak {sam_rec['peak_gib']:.2f} GiB", flush=True)
    del sam, model
    gc.collect()
    if not cpu: torch.cuda.empty_cache()

    # the tiny pipeline on the device: base warm-up -> FRPO run -> SFT fine-tune with its curve -> evaluation
    from frpo_nb.core import read_jsonl, trainer_device_args
    from frpo_nb.data import tiny_safety_prompts
    from frpo_nb.evaluate import evaluate_policy
    from frpo_nb.finetune import finetune
    from frpo_nb.rewards import helpfulness_reward, safety_reward
    from frpo_nb.tiny import WarmUp, load_tiny, tiny_base
    t0 = time.time()
    work = Path(out)
    base = tiny_base(work / "_bases", WarmUp(preset="micro" if tiny else "tiny", steps=4 if tiny else 300))
    dev = {"use_cpu": True, "bf16": False, "dataloader_pin_memory": False} if cpu else trainer_device_args()
    rl = FRPOTrainer(model=str(base), reward_funcs=[safety_reward, helpfulness_reward], train_dataset=tiny_safety_prompts()["train"],
                     args=FRPOConfig(output_dir=str(work / "rl"), loss_type="frpo", frpo_lambda=0.5, beta=0.002,
                                     max_steps=2 if tiny else 30, learning_rate=1e-3, per_device_train_batch_size=8 if tiny else 32,
                                     num_generations=4 if tiny else 8, max_completion_length=8 if tiny else 48,
                                     logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
                                     gradient_checkpointing=False, **dev))
    rl.train()
    rl_device = str(next(rl.model.parameters()).device)
    rl.save_model(str(work / "policy"))
    rl.processing_class.save_pretrained(str(work / "policy"))
    del rl
    ev = dict(n_prompts=2 if tiny else 16, n_samples=2 if tiny else 4)
    ft_model, ft_tok = finetune(work / "policy", "sft-alpaca", setting="safety", curve_path=work / "curve.jsonl",
                                max_steps=2 if tiny else 20, every=1 if tiny else 10, batch_size=4 if tiny else 16,
                                eval_kwargs=ev)
    curve = read_jsonl(work / "curve.jsonl")
    ft_device = str(next(ft_model.parameters()).device)
    base_model, _ = load_tiny(base)
    metrics = evaluate_policy(ft_model.to(device), ft_tok, "safety", ref_model=base_model.to(device), **ev, seed=0)
    pipe = {"s": time.time() - t0, "rl_device": rl_device, "ft_device": ft_device, "curve_rows": len(curve),
            "metrics": metrics}
    print(f"  tiny pipeline: warm-up, FRPO on {rl_device}, SFT on {ft_device} ({len(curve)} curve rows), evaluation: "
          f"refusal {metrics['refusal_greedy']:.2f}, KL to base {metrics['kl_to_ref']:.3g}; {pipe['s']:.0f} s", flush=True)
    finite = all(math.isfinite(v) for v in [*finals["frpo"], *finals["grpo"], *sam_rec["loss"], metrics["kl_to_ref"]])
    on_device = all(d.split(":")[0] == device for d in (rl_device, ft_device))
    return {"n_params": n_params, "step_ms": {n: v * 1e3 for n, v in med.items()}, "ratio_paired": ratio,
            "peak_gib": {n: v / 2**30 for n, v in peak.items()}, "loss": finals, "sam": sam_rec, "pipeline": pipe,
            "ok": finite and on_device and len(curve) >= 2 and bool(sam_rec["loss"]), "wall_s": time.time() - t_stage}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="run on CPU (float32); default: the first CUDA GPU (bf16)")
    p.add_argument("--tiny", action="store_true", help="a tiny model and small sizes everywhere (seconds; for CI)")
    p.add_argument("--impl", choices=["auto", "transformers", "torch"], default="auto")
    p.add_argument("--groups", type=int, help="prompts per training step (default 4; tiny 2)")
    p.add_argument("--k", type=int, default=8, help="completions per prompt")
    p.add_argument("--prompt-len", type=int, help="prompt tokens (default 128; tiny 8)")
    p.add_argument("--completion-len", type=int, help="completion tokens (default 512; tiny 16)")
    p.add_argument("--reps", type=int, help="paired repetitions (default 10; tiny 3)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--gen-batch", type=int, help="prompts generated at once (default 32; tiny 4)")
    p.add_argument("--gen-tokens", type=int, help="new tokens per prompt (default 256; tiny 8)")
    p.add_argument("--loss-shape", type=int, nargs=3, metavar=("G", "K", "T"), help="loss-only batch (default 256 8 4096; tiny 8 4 64)")
    p.add_argument("--lamb", type=float, default=1.0, help="FRPO's λ")
    p.add_argument("--max-ratio", type=float, default=1.10, help="fail when the FRPO/GRPO step ratio exceeds this")
    p.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    p.add_argument("--stage", choices=["auto", "model", "all"], default="auto",
                   help="model: the model and loss checks only (torch alone); all: also the real trainers (needs this "
                        "package, TRL, datasets, peft); auto (default): all where those are importable")
    a = p.parse_args(argv)
    if a.stage == "auto": a.stage = "all" if trainers_available() else "model"
    if a.stage == "all" and not trainers_available():
        print("gpu-check: --stage all needs trl, datasets and peft (a bare node: pip install --no-index --no-deps "
              "gpu-kit/*.whl, from make gpu-kit)", file=sys.stderr)
        return 2
    tiny = a.tiny
    d = lambda v, full, small: v if v is not None else (small if tiny else full)
    groups, P, C = d(a.groups, 4, 2), d(a.prompt_len, 128, 8), d(a.completion_len, 512, 16)
    reps, gen_b, gen_t = d(a.reps, 10, 3), d(a.gen_batch, 32, 4), d(a.gen_tokens, 256, 8)
    G, K, T = a.loss_shape or ((8, 4, 64) if tiny else (256, 8, 4096))
    if not a.cpu and not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA GPU; run with --cpu (and --tiny) to check the script itself", file=sys.stderr)
        return 2
    device, dtype = ("cpu", torch.float32) if a.cpu else ("cuda", torch.bfloat16)
    where = "cpu" if a.cpu else torch.cuda.get_device_name(0)
    t_start = time.time()
    torch.manual_seed(0)
    model, impl, n_params = build(TINY if tiny else QWEN2_05B, a.impl, device, dtype)
    shape = TINY if tiny else QWEN2_05B
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)
    B = groups * a.k
    ids = torch.randint(1, shape.vocab, (B, P + C), device=device)
    mask, adv, gid = group_batch(groups, a.k, C, device)
    print(f"gpu-check: {where}, torch {torch.__version__}, {impl} Qwen2 {n_params / 1e6:.3g} M parameters, {dtype}; "
          f"step batch {groups} prompts x k={a.k}, {P}+{C} tokens; {reps} paired repetitions", flush=True)
    step_losses = {}

    def step(kind):
        logps = completion_logps(model, ids, P)
        loss = losses(kind, logps, mask, adv, gid, a.lamb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step_losses[kind] = float(loss.detach())

    step_t, step_peak, step_ratio = paired(step, ["frpo", "grpo"], reps, a.warmup, device)
    med = {n: statistics.median(v) for n, v in step_t.items()}
    print(f"  training step: FRPO {med['frpo'] * 1e3:.1f} ms, GRPO {med['grpo'] * 1e3:.1f} ms; paired FRPO/GRPO "
          f"{step_ratio:.3f}; peak memory FRPO {step_peak['frpo'] / 2**30:.2f} GiB, GRPO {step_peak['grpo'] / 2**30:.2f} GiB",
          flush=True)
    del opt
    model.eval()
    prompts = torch.randint(1, shape.vocab, (gen_b, P), device=device)

    def generate(n):
        with torch.no_grad():
            if impl == "transformers":
                return model.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=n,
                                      min_new_tokens=n, do_sample=True, use_cache=True)
            return model.sample(prompts, n)

    generate(2)
    sync(device)
    t0 = time.perf_counter()
    out = generate(gen_t)
    sync(device)
    gen_s = time.perf_counter() - t0
    new = (out.shape[1] - P) * gen_b
    tok_s = new / gen_s
    print(f"  generation: {gen_b} prompts x {out.shape[1] - P} new tokens in {gen_s:.2f} s = {tok_s:,.0f} tokens/s", flush=True)
    del model, out
    if device == "cuda": torch.cuda.empty_cache()

    lmask, ladv, lids = group_batch(G, K, T, device, seed=1)
    base = -torch.rand(G * K, T, generator=torch.Generator().manual_seed(2)).to(device) * 3
    loss_values = {}

    def loss_only(kind):
        logps = base.clone().requires_grad_(True)
        loss = losses(kind, logps, lmask, ladv, lids, a.lamb)
        loss.backward()
        loss_values[kind] = float(loss.detach())

    loss_t, loss_peak, loss_ratio = paired(loss_only, ["frpo", "grpo"], reps, a.warmup, device)
    lmed = {n: statistics.median(v) for n, v in loss_t.items()}
    print(f"  loss at G={G} k={K} T={T}: FRPO {lmed['frpo'] * 1e3:.2f} ms, GRPO surrogate {lmed['grpo'] * 1e3:.2f} ms; "
          f"paired FRPO/GRPO {loss_ratio:.3f}; peak memory FRPO {loss_peak['frpo'] / 2**30:.2f} GiB, "
          f"GRPO {loss_peak['grpo'] / 2**30:.2f} GiB; values {loss_values['frpo']:.4f} / {loss_values['grpo']:.4f}", flush=True)

    finite = all(math.isfinite(v) for v in [*step_losses.values(), *loss_values.values()])
    ok = finite and (tiny or a.cpu or step_ratio <= a.max_ratio)
    trainers, tr_line = None, ""
    if a.stage == "all":
        trainers = trainers_stage(device, tiny, groups, a.k if a.k != 8 or not tiny else 4, 8 if tiny else 64,
                                  8 if tiny else 128, 2 if tiny else 3, 1, a.lamb)
        ok = ok and trainers["ok"]
        tr, sam, pipe = trainers, trainers["sam"], trainers["pipeline"]
        tr_line = (f" | trainers FRPO/GRPO {tr['ratio_paired']:.3f} ({tr['step_ms']['frpo']:.0f}/{tr['step_ms']['grpo']:.0f} "
                   f"ms, {tr['peak_gib']['frpo']:.1f}/{tr['peak_gib']['grpo']:.1f} GiB) | LoRA SAM-GRPO {sam['ms']:.0f} ms "
                   f"| tiny pipeline {'OK' if trainers['ok'] else 'FAILED'} on {pipe['rl_device'].split(':')[0]} "
                   f"({pipe['s']:.0f} s)")
    wall = time.time() - t_start
    record = {"device": where, "torch": torch.__version__, "impl": impl, "n_params": n_params, "dtype": str(dtype),
              "python": platform.python_version(), "step": {"groups": groups, "k": a.k, "prompt_len": P, "completion_len": C,
              "reps": reps, "ms": {n: v * 1e3 for n, v in med.items()}, "ratio_paired": step_ratio,
              "peak_gib": {n: v / 2**30 for n, v in step_peak.items()}, "loss": step_losses},
              "generation": {"batch": gen_b, "new_tokens": new // gen_b, "tokens_per_s": tok_s},
              "loss": {"G": G, "k": K, "T": T, "ms": {n: v * 1e3 for n, v in lmed.items()}, "ratio_paired": loss_ratio,
                       "peak_gib": {n: v / 2**30 for n, v in loss_peak.items()}, "value": loss_values},
              "trainers": trainers, "wall_s": wall, "ok": ok}
    if a.out: a.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"gpu-check {'OK' if ok else 'FAILED'}: {where} | {impl} {n_params / 1e6:.3g}M {str(dtype).split('.')[-1]} | "
          f"step FRPO/GRPO {step_ratio:.3f} ({med['frpo'] * 1e3:.0f}/{med['grpo'] * 1e3:.0f} ms) | peak "
          f"{step_peak['frpo'] / 2**30:.1f}/{step_peak['grpo'] / 2**30:.1f} GiB | gen {tok_s:,.0f} tok/s | "
          f"loss G={G} k={K} T={T} FRPO/GRPO {loss_ratio:.3f} ({lmed['frpo'] * 1e3:.1f}/{lmed['grpo'] * 1e3:.1f} ms, "
          f"{loss_peak['frpo'] / 2**30:.2f}/{loss_peak['grpo'] / 2**30:.2f} GiB){tr_line} | {wall:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
