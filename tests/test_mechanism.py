"""The mechanism study's additions leave the existing studies as they were: the confirmatory study's run ids are the
ones it ran under (a new template parameter left at its default is not part of a run's id), the train template's
new parameter defaults to today's reward, and the control method grpo-factor is a method a config can run."""
import hashlib
from pathlib import Path

import yaml

from frpo_nb.core import load_config
from frpo_nb.sweep import check_run_values, check_templates, expand_grid, template_parameters

ROOT = Path(__file__).resolve().parents[1]
# sha256 of the confirmatory study's 96 run ids (configs/tiny-safety-confirm.yaml), space-joined, as it ran
CONFIRM_IDS = "50eec8f20ec88a4f221e81647ba1e517d91e11ecbf78936354833a57a16ac42a"


def test_confirmatory_run_ids_unchanged():
    jobs = expand_grid(load_config(ROOT / "configs" / "tiny-safety-confirm.yaml"))
    assert len(jobs) == 96 and jobs[0].run_id == "safety-tiny-grpo-s100-5ce5ee3a"
    assert hashlib.sha256(" ".join(j.run_id for j in jobs).encode()).hexdigest() == CONFIRM_IDS


def test_train_template_defaults_to_todays_reward():
    params = template_parameters(ROOT / "nbs" / "experiments" / "train.ipynb")
    assert params["safety_reward_kind"] == "rule"


def test_grpo_factor_and_graded_reward_in_a_config(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "tiny-safety-confirm.yaml").read_text())
    cfg.pop("analysis")
    cfg["methods"] = [{"name": "frpo", "lamb": 0.2, "beta": 0.005}, {"name": "grpo-factor", "lamb": 0.2, "beta": 0.005}]
    cfg["train"] = {**cfg["train"], "safety_reward_kind": "graded"}
    cfg["templates"] = {k: str(ROOT / v) for k, v in cfg["templates"].items()}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    config = load_config(tmp_path / "c.yaml")
    jobs = expand_grid(config)
    check_templates(config, jobs)
    check_run_values(config, jobs)
    assert {j.params["method_label"] for j in jobs} == {"frpo-lam0.2", "grpo-factor-lam0.2"}
    assert all(j.params.get("safety_reward_kind") == "graded" for j in jobs if j.kind == "train")
