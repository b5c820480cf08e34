"""The README's Python blocks run as written on a CPU, each in a fresh process and folder (a block whose first
line is `# on a GPU machine` is shown for GPU users and not run here)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
CPU_BLOCKS = [b for b in BLOCKS if not b.startswith("# on a GPU machine")]


def test_readme_has_runnable_blocks():
    assert len(CPU_BLOCKS) >= 2 and len(BLOCKS) > len(CPU_BLOCKS), "the README lost its TRL example or its GPU variant"


@pytest.mark.parametrize("i", range(len(CPU_BLOCKS)))
def test_readme_block_runs(i, tmp_path):
    (tmp_path / "block.py").write_text(CPU_BLOCKS[i])
    res = subprocess.run([sys.executable, "block.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "2",
                              "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"})
    assert res.returncode == 0, f"README block {i} failed:\n{CPU_BLOCKS[i]}\n{res.stderr[-4000:]}"
