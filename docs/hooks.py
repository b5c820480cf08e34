"""mkdocs hooks for the frpo_nb site: one progress line per page while it builds (notebook pages are slow)."""
import re
import sys
import time

_state = {"n": 0, "total": 0, "t0": 0.0}


def on_files(files, config, **kwargs):
    _state.update(n=0, total=sum(1 for f in files if f.is_documentation_page()), t0=time.perf_counter())
    print(f"docs: {_state['total']} pages to render", flush=True)
    return files


def on_pre_page(page, config, files, **kwargs):
    _state["n"] += 1
    print(f"docs: [{_state['n']:>2}/{_state['total']}] {page.file.src_uri}", file=sys.stdout, flush=True)
    return page


def on_post_build(config, **kwargs):
    print(f"docs: {_state['n']} pages rendered in {time.perf_counter() - _state['t0']:.0f} s", flush=True)


# nbconvert's lab template (through mkdocs-jupyter) adds two things that would reach a CDN: the MathJax 2 tag
# (its url is the empty data: script given in mkdocs.yml; MathJax 3 comes from assets/) with its MathJax 2 config,
# and a loader that imports mermaid from cdnjs when a page has a mermaid diagram. No notebook has one: both go.
_MATHJAX2 = re.compile(r'<script src="data:text/javascript,">\s*</script>\s*(?:<!--[^>]*-->\s*)?'
                       r'<script type="text/x-mathjax-config">.*?</script>', re.S)
_MERMAID = re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*?</script>', re.S)


def on_post_page(output, page, config, **kwargs):
    if 'class="jp-Mermaid' in output:
        raise RuntimeError(f"{page.file.src_uri}: a mermaid diagram needs mermaid.js bundled in the site (it would load a CDN)")
    return _MERMAID.sub("", _MATHJAX2.sub("", output))
