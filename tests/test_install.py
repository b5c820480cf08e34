"""A wheel installed outside the checkout works on its own: `frpo-nb run` of a copied config finds the shipped
templates and figure notebooks (slow: builds the wheel and runs a micro sweep)."""
import json
import subprocess
from pathlib import Path

import pytest

from frpo_nb.testing import wheel_venv

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
name: micro-installed
setting: safety
models: [micro]
methods:
  - {name: grpo, beta: 0.1, scale_rewards: group, label: grpo}
  - {name: frpo, lamb: 0.5, beta: 0.002}
seeds: [0]
regimes: [sft-alpaca]
train: {warmup_steps: 4, max_steps: 2, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 8,
        eval_prompts: 2, eval_samples: 2}
finetune: {max_steps: 2, every: 1, batch_size: 4, eval_prompts: 2, eval_samples: 2}
evaluate_after: []
templates: {train: nbs/experiments/train.ipynb, finetune: nbs/experiments/finetune.ipynb}
results_dir: results
"""


@pytest.mark.slow
def test_wheel_runs_a_copied_config_outside_the_checkout(tmp_path):
    py, site = wheel_venv(ROOT, tmp_path)   # the wheel in a venv whose dependencies are this environment's
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "micro.yaml").write_text(CONFIG)
    where = subprocess.run([str(py), "-c", "import frpo_nb, frpo_nb.core as c; print(frpo_nb.__file__); "
                            "print(c.shipped('experiments'))"], capture_output=True, text=True, cwd=work, check=True)
    package, templates = where.stdout.split()
    assert package.startswith(str(site)) and templates.startswith(str(site)), where.stdout
    res = subprocess.run([str(py), "-m", "frpo_nb.cli", "run", "micro.yaml", "--no-progress"], capture_output=True,
                         text=True, timeout=1200, cwd=work)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in (work / "results").glob("*/result.json")]
    assert sorted(r["kind"] for r in runs) == ["finetune", "finetune", "train", "train"]
    assert all(r["template"].startswith(str(site)) for r in runs)          # the package's own templates
    assert (work / "results" / "figures" / "table_degradation.csv").is_file()
