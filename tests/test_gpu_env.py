"""The GPU environment: the package's ranges and the locks of requirements/ (make lock, uv), SDPA attention in the
presets with a clear error for FlashAttention-2 without flash-attn, and the kit for a bare, offline GPU node
(make gpu-kit, tools/gpu_kit.py).

The resolution tests read only the registry's metadata (uv downloads no wheel to resolve) and skip, saying why, when
the registry cannot be reached or uv is missing (it comes with the dev extra).
"""
import importlib.metadata as md
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LINUX = ["--python-platform", "x86_64-manylinux_2_28"]
OFFLINE = re.compile(r"error sending request|dns error|failed to lookup|Could not connect|Connection refused|timed out|"
                     r"Network is unreachable|offline", re.I)


def uv() -> str:
    found = shutil.which("uv") or next((str(p) for p in [Path(sys.executable).parent / "uv"] if p.exists()), None)
    if not found: pytest.skip("uv is not installed (pip install uv, or the dev extra)")
    return found


def compile_(*args, cwd=ROOT) -> dict[str, str]:
    "name -> version of `uv pip compile ARGS`; skips when the registry cannot be reached."
    res = subprocess.run([uv(), "pip", "compile", "-q", "--no-header", "--no-annotate", *args], cwd=cwd,
                         capture_output=True, text=True, timeout=600)
    if res.returncode and OFFLINE.search(res.stderr): pytest.skip(f"the package registry cannot be reached: {res.stderr[-300:]}")
    assert res.returncode == 0, res.stderr[-4000:]
    return pins(res.stdout)


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if m: out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_only_the_old_checkpointing_name():
    "transformers < 5.23 (what vLLM 0.31 allows) rejects the new name; TRL and every transformers 5.x take the old one."
    name = "activation" + "_checkpointing"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    hits = [f for f in files if (ROOT / f).is_file() and name in (ROOT / f).read_text(errors="ignore")]
    assert not hits, f"{name} in {hits}: use gradient_checkpointing"


def test_presets_use_sdpa():
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "model_init_kwargs": found.append((where, (v or {}).get("attn_implementation")))
                else: walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node): walk(v, f"{where}[{i}]")

    for preset in sorted((ROOT / "configs").glob("paper-*.yaml")): walk(yaml.safe_load(preset.read_text()), preset.name)
    assert len(found) >= 6, found
    assert all(attn == "sdpa" for _, attn in found), [f for f in found if f[1] != "sdpa"]


def test_flash_attention_without_flash_attn_says_how_to_install():
    from frpo_nb.paper import split_preset_params
    from frpo_nb.trainer import FRPOConfig
    if importlib.util.find_spec("flash_attn"): pytest.skip("flash-attn is installed: nothing to refuse")
    params = {"model_init_kwargs": {"dtype": "bfloat16", "attn_implementation": "flash_attention_2"}, "max_steps": 2}
    with pytest.raises(ImportError, match=r"pip install flash-attn --no-build-isolation"):
        split_preset_params(params, "train", FRPOConfig)
    params["model_init_kwargs"]["attn_implementation"] = "sdpa"
    assert split_preset_params(params, "train", FRPOConfig)[0]["max_steps"] == 2


def test_installing_the_package_changes_neither_torch_nor_transformers(tmp_path):
    "pip's plan for `pip install .` in this environment (the CPU stack, or make test-gpu-stack's transformers 5.17)."
    report = tmp_path / "report.json"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                          "--quiet", "--report", str(report), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    planned = {i["metadata"]["name"].lower().replace("_", "-") for i in json.loads(report.read_text())["install"]}
    assert planned == {"frpo-nb"}, f"installing the package would also install or change {sorted(planned - {'frpo-nb'})}"


@pytest.mark.slow
def test_gpu_lock_resolves_with_the_package_for_linux():
    "The package's metadata and extras with requirements/gpu.txt as constraints give exactly the lock (make lock)."
    lock = pins((ROOT / "requirements" / "gpu.txt").read_text())
    assert {k: lock.get(k) for k in ("torch", "vllm", "transformers", "trl")} == \
        {"torch": "2.13.0", "vllm": "0.31.0", "transformers": "5.17.0", "trl": "1.16.0"}
    got = compile_("pyproject.toml", "requirements/gpu.in", "--extra", "gpu", "--extra", "eval", "--extra", "slurm",
                   "--extra", "dev", "-c", "requirements/gpu.txt", "--python-version", "3.11", *LINUX)
    assert got == lock, ("the GPU lock is stale (run make lock): "
                         f"{sorted(set(got.items()) ^ set(lock.items()))[:20]}")


@pytest.mark.slow
def test_the_package_keeps_a_gpu_node_s_torch_and_transformers(tmp_path):
    "With torch 2.11 or 2.13 and transformers 5.17 already there (a GPU image, Python 3.12), the package resolves around them."
    for torch_version in ("2.11.0", "2.13.0"):
        (tmp_path / "node.txt").write_text(f"torch=={torch_version}\ntransformers==5.17.0\n")
        got = compile_(str(ROOT / "pyproject.toml"), "-c", str(tmp_path / "node.txt"), "--python-version", "3.12", *LINUX)
        assert (got["torch"], got["transformers"]) == (torch_version, "5.17.0")


def _view_of(names, dest: Path) -> list[str]:
    "Symlinks in `dest` to the files of this environment's installed distributions among `names` (what a node has)."
    site, linked, have = Path(sysconfig.get_paths()["purelib"]), set(), []
    dest.mkdir()
    for name in names:
        try: dist = md.distribution(name)
        except md.PackageNotFoundError: continue                  # CUDA-only pieces of the node's torch
        have.append(name)
        for f in dist.files or []:
            top = f.parts[0]
            if top == ".." or top in linked or not (site / top).exists(): continue
            linked.add(top)
            (dest / top).symlink_to(site / top)
    return have


@pytest.mark.slow
def test_gpu_kit_completes_a_bare_node(tmp_path):
    """make gpu-kit's wheels, installed with --no-index --no-deps into a fresh venv that sees only a node's packages
    (this environment's torch, transformers, accelerate, peft and their dependencies), run the trainers' stage.
    Built for this Python (the real kit is for the node's 3.12: `make gpu-kit`)."""
    import accelerate, peft, torch, transformers
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    has = (f"torch=={torch.__version__.split('+')[0]} transformers=={transformers.__version__} "
           f"accelerate=={accelerate.__version__} peft=={peft.__version__}")
    kit = tmp_path / "kit"
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_kit.py"), "--out", str(kit), "--python", py,
                          "--has", has], capture_output=True, text=True, timeout=900,
                         env=os.environ | {"PATH": f"{Path(uv()).parent}:{os.environ['PATH']}"})
    if res.returncode and OFFLINE.search(res.stderr): pytest.skip(f"the package registry cannot be reached: {res.stderr[-300:]}")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    manifest = json.loads((kit / "MANIFEST.json").read_text())
    assert manifest["mib"] <= 64 and "trl" in manifest["kit"] and "datasets" in manifest["kit"]
    assert not {"torch", "transformers", "accelerate", "peft"} & set(manifest["kit"])
    node = tmp_path / "node"
    venv.EnvBuilder(with_pip=False).create(node)
    node_py = node / "bin" / "python"
    site = Path(subprocess.run([str(node_py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    have = _view_of(manifest["has"], tmp_path / "has")
    assert {"torch", "transformers", "accelerate", "peft"} <= set(have)
    (site / "node_stack.pth").write_text(str(tmp_path / "has") + "\n")
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", "--target",
                          str(site), *map(str, sorted(kit.glob("*.whl")))], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([str(node_py), "-I", "-c", "import trl, datasets, frpo_nb, frpo_nb.trainer, frpo_nb.finetune; "
                          "from frpo_nb.mathgrade import math_equal; print(frpo_nb.__file__, trl.__file__); "
                          "assert math_equal('\\\\frac{1}{2}', '0.5')"], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert all(p.startswith(str(site)) for p in res.stdout.split()), res.stdout     # from the kit, not this venv
    res = subprocess.run([str(node_py), "-I", str(kit / "gpu_check.py"), "--cpu", "--tiny", "--stage", "all", "--out",
                          "r.json"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("gpu-check OK: cpu") and "trainers FRPO/GRPO" in last and "tiny pipeline OK on cpu" in last, last
    r = json.loads((tmp_path / "r.json").read_text())["trainers"]
    assert r["ok"] and r["sam"]["trainable"] > 0 and r["pipeline"]["curve_rows"] >= 2
