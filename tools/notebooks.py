"""Execute the library notebooks in place and keep their outputs (`make notebooks`), or check that the committed
outputs are current (tests/test_notebooks.py): one execution per notebook does both, with nbdev's test rules.

    python tools/notebooks.py execute [NB ...]        # default: every library notebook; writes outputs, then nbdev_clean
    python tools/notebooks.py check NB [--flags slow] # run NB (a failing cell fails), compare its text outputs

Rules (the same as `nbdev_test`): each notebook runs in its own process, in execnb's CaptureShell, with cwd nbs/,
IN_TEST=1; code cells whose leading `#|` directives carry a flag of settings.ini's `tst_flags` (notest slow gpu)
or `eval: false`, and `nbdev_export(` cells, are skipped and keep no output.

Determinism. Outputs must not depend on the machine or the moment, so a cell that would print a timing, a date or
a host is written so it does not (timings belong in bench/), and what is progress rather than result is not kept:
stderr streams (warnings, logging, progress bars; TQDM_DISABLE=1 as well) and the Trainer's per-step log lines
(the dicts with an 'epoch' that transformers prints, with train_runtime). Two things are normalised, the same way
in the committed and in the fresh outputs: the random name of a temporary folder (`/tmp/tmpab12cd34/results` is
kept as `<tmpdir>/results`) and memory addresses (nbdev_clean's clean_ids). `execute` refuses outputs that still
name this checkout's absolute path, a temporary folder or an address.
Images: Agg PNGs are byte-identical on one machine but not promised across freetype/matplotlib builds, so only
text outputs are compared by `check`, and `execute` keeps a committed image when its cell's source and its text
outputs are unchanged (`--images` rewrites every image). Hence `make notebooks` on an unchanged tree changes nothing.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"


def tst_flags() -> set[str]:
    cfg = ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return set(cfg["DEFAULT"].get("tst_flags", "").split())


def library_notebooks() -> list[Path]:
    "The notebooks `make notebooks` executes: nbs/[0-9]*.ipynb, and index / paper_scale when they have code."
    nbs = sorted(NBS.glob("[0-9]*.ipynb")) + [NBS / "index.ipynb", NBS / "paper_scale.ipynb"]
    return [p for p in nbs if p.is_file() and any(c["cell_type"] == "code" for c in _load(p)["cells"])]


def _load(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.*?)\s*$")


def directives(source: str) -> dict[str, list[str]]:
    "nbdev's `#| key value` lines at the top of a cell."
    out = {}
    for line in source.splitlines():
        if not line.strip(): continue
        m = _DIRECTIVE.match(line)
        if not m: break
        key, *vals = m.group(1).split()
        if key: out[key] = vals
    return out


def skipped(cell: dict, skip_flags: set[str]) -> bool:
    "Whether `cell` is not executed (nbdev_test's rule)."
    if cell["cell_type"] != "code": return True
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    if "nbdev_export" + "(" in src: return True
    d = directives(src)
    if d.get("eval:", [""])[0].lower() == "false": return True
    return bool(skip_flags & d.keys())


def _src(cell) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def _text(v) -> str:
    return "".join(v) if isinstance(v, list) else str(v)


def text_outputs(cell: dict) -> list[tuple[str, str]]:
    "The text a cell shows: stdout streams and every text/* (and error) output, in order; no images."
    out = []
    for o in cell.get("outputs", []):
        t = o.get("output_type")
        if t == "stream":
            if o.get("name") == "stdout": out.append(("stdout", _text(o.get("text", ""))))
        elif t == "error": out.append(("error", f"{o.get('ename')}: {o.get('evalue')}"))
        else:
            for mime, v in sorted(o.get("data", {}).items()):
                if mime.startswith("text/") or mime.endswith("json"): out.append((mime, _text(v)))
    return out


# what must never be in a kept output: the check fails on these, so a notebook is fixed rather than scrubbed
NONDETERMINISTIC = {
    "memory address": re.compile(r"\bat 0x[0-9a-f]{6,}"),
    "temporary folder": re.compile(r"(?<![\w<])(?:/tmp|/var/folders)/\w"),
    "absolute path of this checkout": None,                       # filled in by scan()
}


def scan(cell_texts: list[tuple[str, str]]) -> list[str]:
    "Reasons why these outputs would differ elsewhere or another time."
    root = str(ROOT)
    bad = []
    for mime, t in cell_texts:
        for what, rx in NONDETERMINISTIC.items():
            hit = (root in t) if rx is None else rx.search(t)
            if hit: bad.append(f"{what} in {mime}: {(t[:200] + '…') if len(t) > 200 else t!r}")
    return bad


_TRAINER_LOG = re.compile(r"^\{'[\w/]+': .*'epoch': [^{}]*\}\n?$")


def normalise(nb: dict) -> dict:
    "Drop the Trainer's per-step log lines from stdout; write a temporary folder's random name as <tmpdir>."
    import tempfile
    tmp = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[^\s/'\"\]\),]+")
    for c in nb["cells"]:
        outs = []
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                lines = [l for l in o["text"] if not _TRAINER_LOG.match(l)] if isinstance(o["text"], list) else \
                        [l for l in o["text"].splitlines(True) if not _TRAINER_LOG.match(l)]
                if not lines: continue
                o["text"] = [tmp.sub("<tmpdir>", l) for l in lines]
            for mime, v in o.get("data", {}).items():
                if mime.startswith("text/"):
                    o["data"][mime] = [tmp.sub("<tmpdir>", l) for l in v] if isinstance(v, list) else tmp.sub("<tmpdir>", v)
            outs.append(o)
        if c["cell_type"] == "code": c["outputs"] = outs
    return nb


def check_env() -> dict[str, str]:
    "The environment a notebook runs in (`execute`): IN_TEST, no progress bars, matplotlib's backend as given, else agg."
    return {"IN_TEST": "1", "TQDM_DISABLE": "1", "MPLBACKEND": os.environ.get("MPLBACKEND", "agg")}


def execute(path: Path, skip_flags: set[str]) -> tuple[dict, str | None]:
    "Run `path` in this process as nbdev_test does; return (notebook with fresh outputs, error or None)."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    os.environ.update(check_env())
    path = Path(path).resolve()
    nb = read_nb(path)
    shell = CaptureShell(path, mpl_format="png")
    error = None
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        # matplotlib's PNG metadata names its version, nothing of the machine or the time; keep it that way
        shell.run_cell("import matplotlib as _mpl; _mpl.rcParams['svg.hashsalt'] = 'frpo_nb'")
        for cell in nb.cells:
            if cell.cell_type != "code": continue
            cell.outputs, cell.execution_count = [], None
            if skipped(cell, skip_flags): continue
            shell.cell(cell)
            cell.outputs = [o for o in cell.get("outputs", []) if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
            if shell.exc:
                error = shell.prettytb(fname=path)
                break
    finally:
        os.chdir(cwd)
    return json.loads(json.dumps(nb)), error


def _strip_internal(nb: dict) -> dict:
    "Without what execnb's reader adds (the path, cell indices)."
    nb.pop("path_", None)
    for c in nb["cells"]: c.pop("idx_", None)
    return nb


def merge_images(new: dict, old: dict) -> dict:
    "Keep old image outputs where a cell's source and text outputs are unchanged (same cell id)."
    olds = {c.get("id"): c for c in old["cells"]}
    for c in new["cells"]:
        o = olds.get(c.get("id"))
        if c["cell_type"] != "code" or o is None or _src(o) != _src(c) or text_outputs(o) != text_outputs(c): continue
        if len(o.get("outputs", [])) != len(c.get("outputs", [])): continue
        for no, oo in zip(c["outputs"], o["outputs"]):
            nd, od = no.get("data", {}), oo.get("data", {})
            for mime in nd:
                if mime.startswith("image/") and mime in od: nd[mime] = od[mime]
    return new


def clean(nb: dict) -> dict:
    "nbdev_clean's rules (settings.ini): outputs kept, execution counts, ids in reprs and metadata cleaned."
    from nbdev.clean import clean_nb
    from nbdev.config import get_config
    nb = _strip_internal(nb)
    cfg = get_config(path=ROOT)
    clean_nb(nb, clear_all=cfg.clear_all, allowed_metadata_keys=cfg.get("allowed_metadata_keys", "").split() or None,
             allowed_cell_metadata_keys=cfg.get("allowed_cell_metadata_keys", "").split() or None, clean_ids=cfg.clean_ids)
    return nb


def write_clean(nb: dict, path: Path) -> None:
    "Write `nb` to `path` as nbdev_clean leaves it (sources exactly as given; text outputs as lists of lines)."
    nb = clean(nb)
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            if isinstance(o.get("text"), str): o["text"] = o["text"].splitlines(True)
            for mime, v in o.get("data", {}).items():
                if mime.startswith("text/") and isinstance(v, str): o["data"][mime] = v.splitlines(True)
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    subprocess.run([str(Path(sys.executable).parent / "nbdev_clean"), "--fname", str(path)], cwd=ROOT, check=True)


def compare(fresh: dict, committed: dict) -> list[str]:
    "Differences between the text outputs of a fresh run and the committed notebook, cell by cell."
    problems = []
    olds = {c.get("id"): c for c in committed["cells"]}
    for i, c in enumerate(fresh["cells"]):
        if c["cell_type"] != "code": continue
        new = text_outputs(c)
        o = olds.get(c.get("id"))
        old = text_outputs(o) if o else []
        first = _src(c).strip().splitlines()[:1]
        where = f"cell {i} ({first[0][:60] if first else 'empty'})"
        if new != old:
            diff = "\n".join(difflib.unified_diff(["%s: %s" % x for x in old], ["%s: %s" % x for x in new],
                                                  "committed", "fresh", lineterm="", n=1))
            problems.append(f"{where}: the committed outputs are not what it prints now (make notebooks):\n{diff[:3000]}")
        problems += [f"{where}: {b}" for b in scan(new)]
    return problems


def _one(args) -> int:
    path = Path(args.notebook).resolve()
    skip = tst_flags() - set(args.flags.split())
    committed = _load(path)
    fresh, error = execute(path, skip)
    if error:
        print(error, file=sys.stderr)
        return 1
    fresh = normalise(clean(fresh))
    if args.command == "check":
        problems = compare(fresh, committed) if not args.flags else []      # the slow run only runs
        for p in problems: print(f"{path.name}: {p}", file=sys.stderr)
        return 1 if problems else 0
    bad = [f"cell {i}: {b}" for i, c in enumerate(fresh["cells"]) for b in scan(text_outputs(c))]
    if bad:
        print(f"{path.name}: outputs that would not be reproducible; fix the cell:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    if not args.images: fresh = merge_images(fresh, committed)
    sources = {c.get("id"): c["source"] for c in committed["cells"]}
    for c in fresh["cells"]: c["source"] = sources.get(c.get("id"), c["source"])    # as committed, to the list item
    write_clean(fresh, path)
    return 0


def check_forked(notebook: str, flags: str, log: str) -> None:
    """`check --one NOTEBOOK` in a process forked from an interpreter that has already imported the stack (the
    forkserver of tests/test_notebooks.py): its stdout and stderr (file descriptors 1 and 2, so also those of the
    notebook's subprocesses) into `log`; exits with the check's status."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(fd, 1); os.dup2(fd, 2); os.close(fd)
    os.chdir(ROOT)
    try: rc = main(["check", "--one", notebook, "--flags", flags])
    finally: sys.stdout.flush(); sys.stderr.flush()
    sys.exit(rc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["execute", "check"])
    p.add_argument("notebooks", nargs="*", help="default (execute): every library notebook")
    p.add_argument("--flags", default="", help="tst_flags to run anyway (nbdev_test --flags)")
    p.add_argument("--images", action="store_true", help="rewrite every image output, even of unchanged cells")
    p.add_argument("--one", dest="notebook", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.notebook: return _one(args)
    nbs = [Path(n) for n in args.notebooks] or library_notebooks()
    if args.command == "check" and len(nbs) != 1 and not args.notebooks: p.error("check: name the notebooks")
    rc = 0
    for i, nb in enumerate(nbs, 1):
        print(f"[{i}/{len(nbs)}] {args.command} {nb.relative_to(ROOT) if nb.is_absolute() else nb}", flush=True)
        cmd = [sys.executable, __file__, args.command, "--one", str(nb), "--flags", args.flags] + (["--images"] if args.images else [])
        r = subprocess.run(cmd, cwd=ROOT)
        if r.returncode: print(f"  FAILED: {nb}", flush=True); rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
