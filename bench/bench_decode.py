"""`frpo_nb.decoding.decode` of this checkout against an older commit's, on the tiny study's evaluation batches.

    .venv/bin/python bench/bench_decode.py --base <a built base folder> [--old REF] [--reps 3]

The batches an evaluation and the robustness profile sample (the 32 harmful and 32 normal held-out prompts of the
tiny safety world, 8 or 16 samples each, 48 new tokens at most), the greedy pass of the refusal rate, and one GRPO
step's rollout (4 prompts × 8): each decoded by REF's `decode` (default: main before the shared prefill, the dropped
rows and the vectorised draw) and by this checkout's, alternately, with the same seed, one thread. Reported per batch:
the fastest of `--reps` timings of each, their ratio, and whether the tokens, the log-probabilities up to each row's
end and the random state afterwards are equal. Then the draw alone: `torch.multinomial(p, 1)` against
`frpo_nb.decoding._draw_as_multinomial` on a [256, 512] softmax (fastest of 200 calls each), and whether their tokens
and random states agree over 100 seeds.
"""
import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OLD = "6f98cca"   # main before the shared prefill, the dropped rows and the vectorised draw


def old_decode(ref: str):
    "REF's `frpo_nb.decoding.decode`, imported from its source as a module of its own."
    src = subprocess.run(["git", "show", f"{ref}:frpo_nb/decoding.py"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="bench-decode-")) / "decoding_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("decoding_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.decode


def main(a) -> None:
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from frpo_nb.decoding import decode
    from frpo_nb.evaluate import completion_length, eval_prompts
    old = old_decode(a.old)
    model, tok = AutoModelForCausalLM.from_pretrained(a.base), AutoTokenizer.from_pretrained(a.base)
    tok.padding_side = "left"
    sets = eval_prompts("safety")
    harmful, normal = sets["safety"]["prompt"], sets["normal"]["prompt"]
    batches = [("evaluation: harmful × 8", harmful, 8, False), ("evaluation: normal × 8", normal, 8, False),
               ("evaluation: greedy, harmful", harmful, 1, True), ("profile: normal × 16", normal, 16, False),
               ("profile: harmful × 16", harmful, 16, False), ("RL step: 4 prompts × 8", normal[:4], 8, False)]
    print(f"old = {a.old}, new = this checkout; torch {torch.__version__}, 1 thread; fastest of {a.reps}")
    print(f"{'batch':30s} {'rows':>5s} {'steps':>5s} {'old s':>7s} {'new s':>7s} {'old/new':>8s}  same tokens, log-probs, random state")
    for name, prompts, n, greedy in batches:
        enc = tok.apply_chat_template([p for p in prompts for _ in range(n)], add_generation_prompt=True, padding=True,
                                      return_dict=True, return_tensors="pt")
        kw = dict(max_new_tokens=48, greedy=greedy, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, with_logps=True)
        times, outs = {"old": [], "new": []}, {}
        for _ in range(a.reps):
            for side, f in (("old", old), ("new", decode)):
                torch.manual_seed(3)
                t = time.perf_counter()
                out = f(model, enc["input_ids"], enc["attention_mask"], **kw)
                times[side].append(time.perf_counter() - t)
                outs[side] = (out, torch.get_rng_state())
        (ids_o, lp_o), state_o = outs["old"]
        (ids_n, lp_n), state_n = outs["new"]
        inside = torch.arange(ids_o.shape[1])[None] < completion_length(ids_o, tok.eos_token_id)[:, None]
        same = (torch.equal(ids_o, ids_n), torch.equal(lp_o[inside], lp_n[inside]), torch.equal(state_o, state_n))
        to, tn = min(times["old"]), min(times["new"])
        print(f"{name:30s} {ids_o.shape[0]:5d} {ids_o.shape[1]:5d} {to:7.3f} {tn:7.3f} {to / tn:7.2f}x  {same}")
    from frpo_nb.decoding import _draw_as_multinomial
    probs = torch.softmax(torch.randn(256, 512, generator=torch.Generator().manual_seed(0)), -1)
    def fastest(f, n=200):
        best = float("inf")
        for _ in range(n):
            t = time.perf_counter(); f(); best = min(best, time.perf_counter() - t)
        return best
    tm, td = fastest(lambda: torch.multinomial(probs, 1)), fastest(lambda: _draw_as_multinomial(probs))
    differ = 0
    for seed in range(100):
        torch.manual_seed(seed); a = torch.multinomial(probs, 1)[:, 0]; sa = torch.get_rng_state()
        torch.manual_seed(seed); b = _draw_as_multinomial(probs); sb = torch.get_rng_state()
        differ += int((a != b).sum()) + (not torch.equal(sa, sb))
    print(f"the draw, [256, 512]: torch.multinomial {tm * 1e3:.2f} ms, _draw_as_multinomial {td * 1e3:.2f} ms "
          f"({tm / td:.1f}x); tokens or random states that differ in 100 seeds: {differ}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="a built base policy folder (results/<sweep>/_bases/base-tiny-…)")
    ap.add_argument("--old", default=DEFAULT_OLD, help="the commit whose decode is the baseline")
    ap.add_argument("--reps", type=int, default=3)
    main(ap.parse_args())
