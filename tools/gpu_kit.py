"""make gpu-kit: the wheels a bare, offline GPU node lacks for `bench/gpu_check.py --stage trainers`, and this package.

Many clusters' GPU nodes have no network and a preinstalled stack: here Python 3.12, CUDA torch 2.11, transformers
5.17, accelerate and peft, but no trl, datasets or papermill. uv resolves, for linux x86_64 and that Python, what the
trainers' stage imports (TRL and datasets at the GPU lock's versions, math-verify with its antlr4 4.11 runtime) next
to what the node has; the kit is the difference, downloaded as wheels (`pip download --only-binary`, no build), plus
this package's own wheel. On the node:

    pip install --no-index --no-deps gpu-kit/*.whl
    python gpu-kit/gpu_check.py          # bench/gpu_check.py, copied into the kit: model checks and the trainers' stage

    python tools/gpu_kit.py [--out gpu-kit] [--python 3.12] [--has "torch==2.11.0 transformers==5.17.0 ..."]

`MANIFEST.json` in the kit lists the node's packages it assumed (`has`: name -> version) and the kit's wheels.
Fails when the kit exceeds --max-mib (64).
"""
import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAS = "torch==2.11.0 transformers==5.17.0 accelerate==1.15.0 peft==0.21.2"
# what the trainers' stage imports beyond the node's stack; versions from the GPU lock where it has them
NEED = ("trl", "datasets", "math-verify[antlr4_11_0]", "antlr4-python3-runtime", "pandas", "pyyaml")
# datasets 5.2 accepts pyarrow >= 24: its wheel is the smallest of those (49 MB against 55 MB for 26), which keeps
# the kit under 64 MiB
SMALLEST = ("pyarrow<25",)


def pins(path: Path) -> dict[str, str]:
    "name -> version of a `uv pip compile` output."
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if m: out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def uv() -> str:
    found = shutil.which("uv") or (str(Path(sys.executable).parent / "uv") if (Path(sys.executable).parent / "uv").exists() else None)
    if not found: sys.exit("gpu_kit: needs uv (pip install uv, or the dev extra)")
    return found


def resolve(reqs: list[str], python: str, tmp: Path, name: str) -> dict[str, str]:
    src, out = tmp / f"{name}.in", tmp / f"{name}.txt"
    src.write_text("\n".join(reqs) + "\n")
    res = subprocess.run([uv(), "pip", "compile", "-q", str(src), "--python-version", python,
                          "--python-platform", "x86_64-manylinux_2_28", "--no-header", "--no-annotate", "-o", str(out)],
                         capture_output=True, text=True)
    if res.returncode: sys.exit(f"gpu_kit: uv could not resolve {reqs}:\n{res.stderr[-3000:]}")
    return pins(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "gpu-kit")
    ap.add_argument("--python", default="3.12", help="the node's Python (major.minor)")
    ap.add_argument("--has", default=HAS, help="the node's packages, as requirements (space separated)")
    ap.add_argument("--max-mib", type=float, default=64.0)
    args = ap.parse_args(argv)
    lock = pins(ROOT / "requirements" / "gpu.txt")
    need = []
    for r in NEED:
        name = re.split(r"[\[<>=]", r)[0].lower()
        need.append(f"{r}=={lock[name]}" if name in lock else r)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        has = resolve(args.has.split(), args.python, tmp, "has")
        full = resolve(args.has.split() + need + list(SMALLEST), args.python, tmp, "full")
    changed = sorted(n for n in has if n in full and full[n] != has[n])
    if changed:
        sys.exit(f"gpu_kit: the kit would need other versions of the node's packages {changed}; --no-deps cannot do that")
    kit = {n: v for n, v in sorted(full.items()) if n not in has}
    if args.out.exists(): shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    abi = "cp" + args.python.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", "-d", str(args.out),
           "--python-version", args.python, "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none"]
    for plat in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any"): cmd += ["--platform", plat]
    res = subprocess.run(cmd + [f"{n}=={v}" for n, v in kit.items()], capture_output=True, text=True)
    if res.returncode: sys.exit(f"gpu_kit: pip download failed:\n{res.stderr[-3000:]}")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                          str(args.out), str(ROOT)], capture_output=True, text=True)
    if res.returncode: sys.exit(f"gpu_kit: building this package's wheel failed:\n{res.stderr[-3000:]}")
    shutil.copy2(ROOT / "bench" / "gpu_check.py", args.out / "gpu_check.py")      # what the node runs
    wheels = sorted(p.name for p in args.out.glob("*.whl"))
    mib = sum(p.stat().st_size for p in args.out.iterdir()) / 2**20
    (args.out / "MANIFEST.json").write_text(json.dumps({"python": args.python, "platform": "linux x86_64",
                                                        "has": has, "kit": kit, "wheels": wheels,
                                                        "mib": round(mib, 1)}, indent=1) + "\n")
    print(f"gpu-kit: {len(wheels)} wheels, {mib:.1f} MiB in {args.out} (Python {args.python}; the node has "
          f"{', '.join(args.has.split())}): pip install --no-index --no-deps {args.out.name}/*.whl")
    if mib > args.max_mib:
        print(f"gpu-kit: {mib:.1f} MiB is over the {args.max_mib:g} MiB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
