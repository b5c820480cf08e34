"""A fresh clone rebuilds the committed figures: `make figures` in a `git clone` of this checkout's HEAD commit, from
the committed run records (studies/records/: the clone has no results/), leaves figures/ exactly as committed, and
the figure notebooks (nbs/figures/, whose outputs it writes back) too.

The commands are the Makefile's own: the test runs `make -o install figures VENV=<this venv>` in the clone (`-o install`:
make's install is not run, the checkout's venv is used as it is), so the recipe the test checks cannot drift from the
one `make figures` runs. The clone's code is the one imported (PYTHONPATH=<clone>). Until studies/records holds the
records of the committed figures (`make records`, committed with them) this test fails, and says which files differ.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent          # <venv>/bin/python, not resolved (a venv's python is a symlink)


def git(*args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.slow
def test_fresh_clone_rebuilds_the_committed_figures(tmp_path):
    if shutil.which("git") is None or git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip(f"{ROOT} is not a git checkout: there is no commit to clone")
    if shutil.which("make") is None: pytest.skip("no make on PATH")
    if not (VENV / "bin" / "frpo-nb").is_file() or not (VENV / "bin" / "nbdev_clean").is_file():
        pytest.skip(f"{VENV} (the venv of {sys.executable}) has no frpo-nb or nbdev_clean: make install first")
    head = git("rev-parse", "HEAD").stdout.strip()
    clone = tmp_path / "clone"
    for cmd in (["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)],     # a worktree's HEAD may not be
                ["git", "-C", str(clone), "checkout", "--quiet", "--detach", head]):     # the repository's: check it out
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"{' '.join(cmd)}: {res.stderr}"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}   # not the caller's make
    env |= {"PYTHONPATH": str(clone), "PATH": f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    made = subprocess.run(["make", "--no-print-directory", "-o", "install", "figures", f"VENV={VENV}"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=3600)
    porcelain = git("status", "--porcelain", "--untracked-files=all", "--", "figures/", "nbs/figures/",
                    cwd=clone).stdout.splitlines()
    if made.returncode or porcelain:
        print(f"make figures in a clone of {head[:12]}: exit status {made.returncode}\n--- its output (tail)\n"
              + "\n".join((made.stdout + made.stderr).splitlines()[-60:]))
        print("--- git status --porcelain figures/ nbs/figures/\n" + "\n".join(porcelain))
        print("--- git diff --stat figures/\n" + git("diff", "--stat", "--", "figures/", "nbs/figures/", cwd=clone).stdout)
        print("--- the tables' changes (git diff figures/*.md, first lines)\n"
              + "\n".join(git("diff", "--", "figures/*.md", cwd=clone).stdout.splitlines()[:80]))
        print("--- the figure notebooks' changes (git diff nbs/figures/, first lines, each cut at 200 characters)\n"
              + "\n".join(l[:200] for l in git("diff", "--", "nbs/figures/", cwd=clone).stdout.splitlines()[:120]))
    assert made.returncode == 0, f"make figures failed in the clone (exit status {made.returncode}); see the output above"
    assert not porcelain, ("make figures changed the committed figures/ (or the figure notebooks' outputs) in a fresh "
                           f"clone: {porcelain}")
