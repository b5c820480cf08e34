"""The documentation site in a real browser: `_docs/` (make docs; built here when missing) served on 127.0.0.1 and
every page opened in headless Chromium (Debian's /usr/bin/chromium, driven by playwright; no browser download).

Each page: no page error, no console error, every image loaded (natural width > 0), every link to this site
answers 200; the loss page (nbs/01_loss.ipynb) has its math typeset by MathJax, no raw `$$` left. Screenshots
of the index, the loss page and figure 1 go to $TMPDIR (their paths are printed). `make test-slow` runs it
(.ci/run installs chromium and the docs extra, with playwright, first).
"""
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_docs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)"
    try: import playwright.sync_api  # noqa: F401
    except ImportError: return "playwright is not installed (pip install -e '.[docs]'; make docs installs it)"
    try: import mkdocs  # noqa: F401
    except ImportError: return "mkdocs is not installed (pip install -e '.[docs]'; make docs installs it)"
    return None


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):           # a page closed while a file was on its way
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def site():
    "The base URL of _docs/ served on 127.0.0.1 (built first when missing)."
    why = _missing()
    if why: pytest.skip(why)
    if not (SITE / "index.html").is_file():
        subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py")], cwd=ROOT, check=True)
    httpd = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(SITE)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium"),
                              headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _pages() -> list[str]:
    "Every page of the site, as a path below its root ('' is the index)."
    rels = [p.parent.relative_to(SITE) for p in SITE.rglob("index.html")]
    return sorted("" if r == Path(".") else r.as_posix() + "/" for r in rels if not r.parts or r.parts[0] != "assets")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.status
    except urllib.error.HTTPError as e: return e.code


def test_every_page_in_chromium(site, browser):
    pages = _pages()
    assert len(pages) >= 40, f"only {len(pages)} pages in {SITE}"
    assert "" in pages and "nbs/01_loss/" in pages and "nbs/figures/fig1_refusal_vs_sft/" in pages, pages[:10]
    shots = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "frpo-docs-screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    problems, links, t0 = [], set(), time.perf_counter()
    for path in pages:
        url = site + path
        page, errors = ctx.new_page(), []
        page.on("pageerror", lambda e, errors=errors: errors.append(f"page error: {e}"))
        page.on("request", lambda r, errors=errors: errors.append(f"loads from another host: {r.url[:120]}")
                if urlparse(r.url).scheme in ("http", "https") and urlparse(r.url).netloc != urlparse(site).netloc else None)
        page.on("console", lambda m, errors=errors: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        resp = page.goto(url, wait_until="load")
        if resp is None or resp.status != 200: problems.append(f"/{path}: HTTP {resp and resp.status}")
        # MathJax typesets after load: wait for it (every page has it)
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
        page.evaluate("() => MathJax.startup.promise")
        broken = page.evaluate("() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                               ".map(i => (i.currentSrc || i.src).slice(0, 120))")
        problems += [f"/{path}: image not loaded: {b}" for b in broken]
        hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        links.update(urldefrag(h)[0] for h in hrefs if urlparse(h).netloc == urlparse(site).netloc)
        if path == "nbs/01_loss/":
            n_math = page.evaluate("() => document.querySelectorAll('mjx-container').length")
            raw = page.evaluate("() => document.querySelector('article, .md-content').innerText.includes('$$')")
            if n_math < 5: problems.append(f"/{path}: only {n_math} typeset formulas (mjx-container)")
            if raw: problems.append(f"/{path}: raw $$ left in the page text: MathJax did not typeset it")
            page.locator("mjx-container").first.scroll_into_view_if_needed()
            page.evaluate("() => window.scrollBy(0, -150)")
            page.screenshot(path=str(shots / "loss.png"))
        elif path == "":
            page.screenshot(path=str(shots / "index.png"))
        elif path == "nbs/figures/fig1_refusal_vs_sft/":
            page.screenshot(path=str(shots / "fig1_refusal_vs_sft.png"))
        problems += [f"/{path}: {e}" for e in errors]
        page.close()
    ctx.close()
    dead = sorted(u for u in links if _status(u) != 200)
    problems += [f"dead internal link: {u}" for u in dead]
    print(f"\ndocs: {len(pages)} pages opened in Chromium, {len(links)} internal links checked "
          f"({time.perf_counter() - t0:.0f} s); screenshots:")
    for name in ("index", "loss", "fig1_refusal_vs_sft"): print(f"  {shots / (name + '.png')}")
    assert not problems, "\n".join(problems[:50])
