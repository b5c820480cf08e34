"""Properties of frpo_nb.loss beyond the notebook's examples: many random batches, invariances, the bench script."""
import math
import sys
from pathlib import Path

import pytest
import torch

from frpo_nb.loss import (frpo_group_objective, frpo_loss, frpo_loss_reference, group_layout, robust_value,
                          robust_value_at_radius)
from frpo_nb.testing import random_frpo_batch

OPTIONS = [dict(), dict(jackknife=False), dict(offset=False), dict(importance_sampling_level="sequence"),
           dict(delta=1.05, epsilon_high=0.4), dict(beta=0.2), dict(lamb=0.05), dict(lamb=20.0)]


def grad_of(fn, batch, perm=None, **kw):
    logits = batch["logits"].detach().clone().requires_grad_(True)
    take = (lambda t: t) if perm is None else (lambda t: t[perm])
    out = fn(torch.nn.functional.logsigmoid(take(logits)), take(batch["completion_mask"]), take(batch["advantages"]),
             take(batch["group_ids"]), **{k: take(v) if isinstance(v, torch.Tensor) else v for k, v in kw.items()})
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    return loss.detach(), logits.grad


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_matches_per_group_loop(seed, opts):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(2, 9, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g).tolist()
    batch = random_frpo_batch(sizes, T=9, seed=100 + seed)
    kw = dict(lamb=0.8, old_per_token_logps=batch["old_per_token_logps"],
              ref_per_token_logps=batch["ref_per_token_logps"]) | opts
    l1, g1 = grad_of(frpo_loss, batch, **kw)
    l2, g2 = grad_of(frpo_loss_reference, batch, **kw)
    assert torch.allclose(l1, l2, rtol=0, atol=1e-10), (l1, l2)
    assert torch.allclose(g1, g2, rtol=0, atol=1e-10), (g1 - g2).abs().max()


def test_row_order_and_id_values_do_not_matter():
    batch = random_frpo_batch([5, 8, 3, 8], seed=7)
    kw = dict(lamb=0.3, old_per_token_logps=batch["old_per_token_logps"])
    l1, g1 = grad_of(frpo_loss, batch, **kw)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(1))
    l2, g2 = grad_of(frpo_loss, batch, perm=perm, **kw)
    assert torch.allclose(l1, l2, atol=1e-12) and torch.allclose(g1, g2, atol=1e-12)
    relabelled = dict(batch, group_ids=batch["group_ids"] * 1000 - 5)
    l3, g3 = grad_of(frpo_loss, relabelled, **kw)
    assert torch.allclose(l1, l3, atol=1e-12) and torch.allclose(g1, g3, atol=1e-12)


def test_group_constant_shift_of_advantages_keeps_gradient():
    "Centring advantages only shifts J_g by a constant per group (spec §2), for plain J and the jackknife."
    batch = random_frpo_batch([6, 4, 7], seed=3)
    shift = {3: 0.7, 13: -1.3, 23: 2.0}
    shifted = dict(batch, advantages=batch["advantages"] + torch.tensor([shift[int(i)] for i in batch["group_ids"]],
                                                                        dtype=torch.float64))
    for jackknife in (False, True):
        kw = dict(lamb=0.4, jackknife=jackknife, old_per_token_logps=batch["old_per_token_logps"])
        _, g1 = grad_of(frpo_loss, batch, **kw)
        _, g2 = grad_of(frpo_loss, shifted, **kw)
        assert torch.allclose(g1, g2, atol=1e-10)


def test_group_objective_differs_between_groups_only_through_its_members():
    "Changing one group's advantages leaves the other groups' terms untouched (no leakage across groups)."
    batch = random_frpo_batch([4, 4, 4], seed=9, shuffle=False)
    lay = group_layout(batch["group_ids"])
    log_m = torch.zeros(12, dtype=torch.float64)
    t1 = frpo_group_objective(log_m, batch["advantages"], lay, 0.5)
    adv = batch["advantages"].clone(); adv[4:8] = adv[4:8].flip(0) * 3
    t2 = frpo_group_objective(log_m, adv, lay, 0.5)
    assert torch.allclose(t1[[0, 2]], t2[[0, 2]]) and not torch.allclose(t1[1], t2[1])


@pytest.mark.parametrize("lamb", [1e-3, 1e-2, 0.1])
def test_float32_matches_float64_for_small_lambda(lamb):
    batch = random_frpo_batch([8] * 6, seed=4, adv_scale=2.0)
    l64, g64 = grad_of(frpo_loss, batch, lamb=lamb, old_per_token_logps=batch["old_per_token_logps"])
    b32 = {k: v.float() if v.is_floating_point() else v for k, v in batch.items()}
    l32, g32 = grad_of(frpo_loss, b32, lamb=lamb, old_per_token_logps=b32["old_per_token_logps"])
    assert torch.isfinite(l32) and torch.isfinite(g32).all()
    assert abs(l32.item() - l64.item()) <= 1e-4 * max(1.0, abs(l64.item()))
    assert (g32.double() - g64).abs().max() <= 1e-4 * g64.abs().max()


def test_robust_value_between_min_and_mean_and_monotone_in_lambda():
    torch.manual_seed(0)
    r = torch.rand(40, dtype=torch.float64)
    ids = torch.arange(5).repeat_interleave(8)
    lay = group_layout(ids)
    vals = [robust_value(r, ids, lam) for lam in (0.05, 0.2, 1.0, 5.0)]
    for a, b in zip(vals, vals[1:]): assert (a <= b + 1e-12).all()   # larger λ, smaller ball, larger value
    mean = torch.zeros(5, dtype=torch.float64).index_add(0, lay.group, r) / 8
    mins = torch.full((5,), math.inf, dtype=torch.float64).scatter_reduce(0, lay.group, r, "amin")
    assert (vals[0] >= mins - 1e-12).all() and (vals[-1] <= mean + 1e-12).all()


def test_ball_value_decreases_with_radius_and_lambda_star_shrinks():
    r = torch.tensor([0.0, 0.3, 0.9, 1.0, 1.0, 0.8, 0.6, 0.2], dtype=torch.float64)
    ids = torch.zeros(8, dtype=torch.long)
    out = [robust_value_at_radius(r, ids, eps) for eps in (0.01, 0.1, 0.5, 1.0)]
    values, lams = [o[0].item() for o in out], [o[1].item() for o in out]
    assert all(a > b for a, b in zip(values, values[1:])) and all(a > b for a, b in zip(lams, lams[1:]))
    # the dual at λ* is the value, and λ* is a maximiser: nearby λ give no more
    for (v, lam), eps in zip(zip(values, lams), (0.01, 0.1, 0.5, 1.0)):
        for f in (0.9, 1.1):
            assert robust_value(r, ids, lam * f).item() - lam * f * eps <= v + 1e-9


def test_bench_script_runs_small():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_loss
    med = bench_loss.main(["--groups", "4", "--k", "4", "--T", "8", "--reps", "3", "--loop-reps", "1"])
    assert set(med) == {"frpo_loss", "grpo_surrogate", "per_group_loop"} and all(v > 0 for v in med.values())
