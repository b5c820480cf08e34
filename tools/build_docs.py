"""Build the documentation site into _docs/ (`make docs`): the notebooks as committed, with their outputs.

Lays the pages out in _proc/docs/ with the repository's own paths (README's links work on both), then runs
`mkdocs build` (mkdocs-material, mkdocs-jupyter with execute: false, mkdocstrings for the API reference):

  index.md              README.md (generated from nbs/index.ipynb)
  nbs/*.ipynb           every library notebook, nbs/paper_scale.ipynb (the GPU guide), nbs/results.ipynb
  nbs/figures/*.ipynb   the figure notebooks (outputs as `make figures` left them)
  figures/**/*.png      the studies' committed figures
  api/*.md              one page per module of frpo_nb: `::: frpo_nb.MODULE`
  assets/mathjax/       MathJax 3 (tex-svg, self-contained: no font files), from the npm package mathjax@3.2.2
                        (Apache-2.0, its LICENSE beside it), fetched once with `npm pack` into .cache/

As nbdev's own site does, cells marked `#| hide` (and `#| default_exp`) are left out, `#| echo: false` cells show
only their outputs, and the `#|` directive lines are not shown. The site must load nothing from another host:
the build fails if a page has a script, stylesheet, image or font from one.
"""
from __future__ import annotations

import ast
import copy
import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
STAGE = ROOT / "_proc" / "docs"
SITE = ROOT / "_docs"
MATHJAX = "3.2.2"
CACHE = ROOT / ".cache" / f"mathjax-{MATHJAX}"

MATHJAX_CONFIG = r"""// MathJax 3 for every page: markdown pages (pymdownx.arithmatex: \( \) and \[ \]) and notebook pages ($ and $$)
window.MathJax = {
  tex: {inlineMath: [["\\(", "\\)"], ["$", "$"]], displayMath: [["\\[", "\\]"], ["$$", "$$"]],
        processEscapes: true, processEnvironments: true},
  options: {ignoreHtmlClass: "tex2jax_ignore|mathjax_ignore", processHtmlClass: "tex2jax_process|mathjax_process|arithmatex"},
  svg: {fontCache: "global"}
};
"""

_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.*?)\s*$")


def _src(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def split_directives(src: str) -> tuple[dict, str]:
    "nbdev's leading `#| key value` lines of a cell, and the source without them."
    lines, d = src.splitlines(True), {}
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if not lines[i].strip() and d: i += 1; continue
        if not m: break
        key, *vals = m.group(1).split() or [""]
        d[key.rstrip(":")] = vals
        i += 1
    return d, "".join(lines[i:])


_LINK = re.compile(r"""(\]\(|<img [^>]*src=["'])(?![a-z]+:|#|/)([^)"'\s]+)""")


def relink(md: str) -> str:
    "A notebook page is one folder deeper than its notebook (nbs/x.ipynb -> nbs/x/): relative links and images follow."
    def sub(m):
        target = m.group(2)
        if target.endswith(".ipynb"): target = target[:-len(".ipynb")] + "/"
        return m.group(1) + "../" + target
    return _LINK.sub(sub, md)


def page_notebook(src: Path, dest: Path) -> str:
    "Copy notebook `src` to `dest` as a page (hidden cells out, directive lines off); return its title."
    nb = json.loads(src.read_text(encoding="utf-8"))
    cells = []
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            d, body = split_directives(_src(c))
            if "hide" in d or "default_exp" in d or not body.strip(): continue
            if "include" in d and d["include"][:1] == ["false"]: continue
            c = copy.deepcopy(c)
            c["source"] = body
            if "echo" in d and d["echo"][:1] == ["false"] or "hide_input" in d:
                c.setdefault("metadata", {}).setdefault("tags", []).append("remove_input")
        elif c["cell_type"] == "raw": continue
        else:
            c = copy.deepcopy(c)
            c["source"] = relink(_src(c))
        cells.append(c)
    # the title first, as nbdev's site has it (an imports cell may come before the title cell)
    first_h1 = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and re.match(r"\s*#\s", _src(c))), None)
    if first_h1: cells.insert(0, cells.pop(first_h1))
    nb["cells"] = cells
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")
    title = next((m.group(1) for c in cells if c["cell_type"] == "markdown"
                  for m in [re.search(r"^#\s+(.+)$", _src(c), re.M)] if m), src.stem)
    return re.sub(r"[`*]", "", title).strip()


def mathjax() -> Path:
    "MathJax's es5/tex-svg.js and LICENSE from the npm package (fetched once with npm pack)."
    js = CACHE / "tex-svg.js"
    if not js.is_file():
        print(f"docs: fetching MathJax {MATHJAX} (npm pack mathjax@{MATHJAX})", flush=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        npm = shutil.which("npm")
        if not npm: sys.exit("docs: npm is needed once to fetch MathJax (apt-get install npm), or put tex-svg.js in " + str(CACHE))
        subprocess.run([npm, "pack", f"mathjax@{MATHJAX}", "--pack-destination", str(CACHE), "--silent"], check=True,
                       cwd=CACHE, stdout=subprocess.DEVNULL)
        tgz = CACHE / f"mathjax-{MATHJAX}.tgz"
        with tarfile.open(tgz) as t:
            for name, out in (("package/es5/tex-svg.js", js), ("package/LICENSE", CACHE / "LICENSE")):
                out.write_bytes(t.extractfile(name).read())
        tgz.unlink()
    return js


def module_pages() -> list[tuple[str, str]]:
    "(module, first line of its docstring) for every public module of frpo_nb."
    out = []
    for f in sorted((ROOT / "frpo_nb").glob("*.py")):
        if f.name.startswith("_"): continue
        doc = ast.get_docstring(ast.parse(f.read_text(encoding="utf-8"))) or ""
        out.append((f.stem, doc.strip().splitlines()[0] if doc.strip() else ""))
    return out


def stage() -> list:
    "Lay out _proc/docs/; return mkdocs' nav."
    if STAGE.exists(): shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (STAGE / "index.md").write_text(readme, encoding="utf-8")
    (STAGE / "figures").mkdir()
    for f in sorted((ROOT / "figures").rglob("*.png")):          # figures/ and its per-study folders (figures/confirm2/)
        (STAGE / "figures" / f.relative_to(ROOT / "figures")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, STAGE / "figures" / f.relative_to(ROOT / "figures"))
    lib = [p for p in sorted(NBS.glob("[0-9]*.ipynb"))]
    nav_lib = [{page_notebook(p, STAGE / "nbs" / p.name): f"nbs/{p.name}"} for p in lib]
    results = []
    if (NBS / "results.ipynb").is_file():
        results.append({page_notebook(NBS / "results.ipynb", STAGE / "nbs" / "results.ipynb"): "nbs/results.ipynb"})
    results += [{page_notebook(p, STAGE / "nbs" / "figures" / p.name): f"nbs/figures/{p.name}"}
                for p in sorted((NBS / "figures").glob("*.ipynb"))]
    guide = page_notebook(NBS / "paper_scale.ipynb", STAGE / "nbs" / "paper_scale.ipynb")
    api = []
    (STAGE / "api").mkdir()
    for mod, doc in module_pages():
        (STAGE / "api" / f"{mod}.md").write_text(f"# frpo_nb.{mod}\n\n::: frpo_nb.{mod}\n    options:\n"
                                                  "      show_root_heading: false\n", encoding="utf-8")
        api.append({f"frpo_nb.{mod}": f"api/{mod}.md"})
    assets = STAGE / "assets" / "mathjax"
    assets.mkdir(parents=True)
    js = mathjax()
    shutil.copy2(js, assets / "tex-svg.js")
    shutil.copy2(js.parent / "LICENSE", assets / "LICENSE")
    (STAGE / "assets" / "mathjax-config.js").write_text(MATHJAX_CONFIG, encoding="utf-8")
    return [{"Home": "index.md"}, {"Results": results}, {"Library notebooks": nav_lib},
            {"Paper-scale guide": [{guide: "nbs/paper_scale.ipynb"}]}, {"API reference": api}]


EXTERNAL = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)["'][^>]*>""", re.I)
CSS_URL = re.compile(r"""url\(\s*["']?((?:https?:)?//[^"')]+)""", re.I)
SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script>", re.S | re.I)
URL = re.compile(r"""["'`]((?:https?:)?//[^"'`\s]+)""")


def external_loads(site: Path) -> list[str]:
    "Scripts, stylesheets, images, frames and fonts the site would load from another host."
    bad = []
    for f in sorted(site.rglob("*")):
        if f.suffix not in (".html", ".css") or not f.is_file(): continue
        text = f.read_text(encoding="utf-8", errors="replace")
        for m in EXTERNAL.finditer(text):
            tag = m.group(0)
            if re.match(r"<link\b", tag, re.I) and not re.search(r"""rel\s*=\s*["'](?:stylesheet|preload|modulepreload|icon)""", tag, re.I):
                continue                                   # <link rel="canonical"> and the like load nothing
            bad.append(f"{f.relative_to(site)}: {m.group(1)}")
        bad += [f"{f.relative_to(site)}: {u}" for u in CSS_URL.findall(text)]
        if f.suffix == ".html":                            # an inline script importing or fetching from a host
            bad += [f"{f.relative_to(site)}: {u} (inline script)" for body in SCRIPT.findall(text) for u in URL.findall(body)
                    if not u.startswith(("http://www.w3.org/", "https://www.w3.org/"))]
    return bad


def main() -> int:
    t0 = time.perf_counter()
    print("docs: laying out the pages in _proc/docs/", flush=True)
    nav = stage()
    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    cfg.update(docs_dir=str(STAGE), site_dir=str(SITE), nav=nav, hooks=[str(ROOT / h) for h in cfg.get("hooks", [])])
    for p in cfg["plugins"]:
        if isinstance(p, dict) and "mkdocstrings" in p: p["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT)]
    conf = ROOT / "_proc" / "mkdocs.yml"
    conf.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    print("docs: mkdocs build", flush=True)
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--clean", "-f", str(conf)], cwd=ROOT)
    if r.returncode: return r.returncode
    bad = external_loads(SITE)
    if bad:
        print("docs: FAIL: the site loads from other hosts:\n  " + "\n  ".join(bad[:40]), flush=True)
        return 1
    pages = sum(1 for _ in SITE.rglob("index.html"))
    print(f"docs: {pages} pages in {SITE.relative_to(ROOT)}/ ({time.perf_counter() - t0:.0f} s); nothing loaded from other hosts; "
          f"serve: python -m http.server -d {SITE.relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
