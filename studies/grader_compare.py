"""The math grader comparison of nbs/05a_mathgrade.ipynb: math-verify (frpo_nb.mathgrade.math_equal) against a human
label on the tiny world's answers and on 241 MATH-style pairs (50 MATH answer forms × the rewrites a model writes and
near misses), and — when its module is importable — the authors' grader, DR-GRPO's `boxed_reward_fn(fast=True)`.

    .venv/bin/python studies/grader_compare.py [--drgrpo-path DIR]

DR-GRPO's grader is not a dependency: its `math_grader.py` ships in the `oat-llm` wheel (oat/utils/math_grader.py,
Python < 3.11 metadata: `pip download oat-llm==0.2.4 --no-deps --python-version 3.10 --only-binary=:all:`) and needs
`pylatexenc`; pass the folder holding `math_grader.py` (and pylatexenc on PYTHONPATH). Without it only math-verify runs.
Measured (2026-11): tiny 180/180 for both; MATH-style math-verify 234/241, DR-GRPO 216/241 (the old sympy grader,
since removed: 224/241).
"""
import argparse
import json
import random
import sys
import time

from frpo_nb.data import tiny_math
from frpo_nb.mathgrade import math_equal

# MATH-style references with rewrites a model writes (True) and near misses (False)
MATH = [
 ("\\frac{3}{4}", ["0.75", "\\dfrac{3}{4}", "\\frac34", "3/4", "\\tfrac{3}{4}"], ["\\frac{4}{3}", "0.7", "\\frac{3}{5}"]),
 ("2\\sqrt{3}", ["\\sqrt{12}", "2 \\sqrt 3", "2\\sqrt3"], ["3\\sqrt{2}", "\\sqrt{6}", "2\\sqrt{3}+1"]),
 ("\\frac{\\sqrt{5}}{5}", ["\\frac{1}{\\sqrt{5}}", "\\frac{\\sqrt5}{5}", "\\dfrac{\\sqrt{5}}{5}"], ["\\frac{\\sqrt{5}}{2}", "\\sqrt{5}"]),
 ("-\\frac{1}{2}", ["-0.5", "\\frac{-1}{2}", "-\\dfrac{1}{2}", "-1/2"], ["\\frac{1}{2}", "-2"]),
 ("(1,-2)", ["(1, -2)", "\\left(1,-2\\right)"], ["(-2,1)", "(1,2)", "1,-2"]),
 ("[-2,5)", ["[-2, 5)", "\\left[-2,5\\right)"], ["(-2,5)", "[-2,5]", "[2,5)"]),
 ("(-\\infty,3]", ["(-\\infty, 3]", "\\left(-\\infty,3\\right]"], ["(-\\infty,3)", "(3,\\infty)"]),
 ("\\text{(C)}", ["C", "(C)", "\\textbf{(C)}", "\\text{C}"], ["B", "\\text{(D)}"]),
 ("12\\pi", ["12 \\pi", "\\pi \\cdot 12", "12\\cdot\\pi"], ["12", "6\\pi", "24\\pi"]),
 ("x^2+2x+1", ["(x+1)^2", "1+2x+x^2", "x^2 + 2x + 1"], ["x^2+1", "(x-1)^2"]),
 ("45^\\circ", ["45", "45^{\\circ}", "45°", "45 \\text{ degrees}"], ["135", "45.5"]),
 ("\\$18.90", ["18.90", "18.9", "\\$18.9", "\\$ 18.90"], ["18.09", "19"]),
 ("\\{1,3\\}", ["\\{3,1\\}", "1,3", "3, 1"], ["\\{1,2\\}", "\\{1\\}"]),
 ("y=-2x+1", ["y = -2x + 1", "y=1-2x"], ["y=2x+1", "y=-2x-1"]),
 ("6\\text{ inches}", ["6", "6 \\text{ in}", "6\\text{inches}"], ["7", "12"]),
 ("\\frac{1}{6}", ["\\dfrac{1}{6}", "1/6", "0.1\\overline{6}"], ["\\frac{1}{5}", "0.16"]),
 ("1000", ["1,000", "1{,}000", "10^3", "1000.0"], ["100", "10000"]),
 ("3", ["3.0", "x=3", "\\text{3}", "3."], ["-3", "4"]),
 ("\\sqrt{2}", ["\\sqrt2", "2^{1/2}", "\\sqrt{2}"], ["2", "\\sqrt{3}"]),
 ("4\\sqrt{2}", ["\\sqrt{32}", "4 \\sqrt{2}"], ["2\\sqrt{2}", "4\\sqrt{3}"]),
 ("\\frac{7}{2}", ["3.5", "\\frac{14}{4}", "3\\frac{1}{2}", "7/2"], ["\\frac{2}{7}", "3.4"]),
 ("\\text{Tuesday}", ["Tuesday", "\\text{tuesday}", "\\textbf{Tuesday}"], ["Monday", "\\text{Wednesday}"]),
 ("\\text{even}", ["even", "\\text{Even}"], ["odd", "\\text{odd}"]),
 ("10\\%", ["10", "10 \\%", "0.1"], ["1", "100"]),
 ("2x-3", ["-3+2x", "2x - 3"], ["2x+3", "3-2x"]),
 ("\\frac{\\pi}{3}", ["\\pi/3", "\\frac{1}{3}\\pi"], ["\\frac{\\pi}{6}", "\\frac{2\\pi}{3}"]),
 ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", ["\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\left(\\begin{array}{c} 1 \\\\ 2 \\end{array}\\right)"], ["\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"]),
 ("0", ["0.0", "-0", "x=0"], ["1", "O"]),
 ("-7", ["-7.0", "- 7", "x=-7"], ["7", "-6"]),
 ("\\frac{9}{25}", ["0.36", "\\dfrac{9}{25}", "9/25"], ["\\frac{3}{5}", "0.35"]),
 ("5\\sqrt{2}-3", ["-3+5\\sqrt{2}", "5\\sqrt2 - 3"], ["5\\sqrt{2}+3", "3-5\\sqrt{2}"]),
 ("a^2b", ["ba^2", "a^{2}b", "b a^2"], ["ab^2", "a^2+b"]),
 ("2^{10}", ["1024", "2^10"], ["20", "512"]),
 ("\\frac{1}{2}(3+\\sqrt{5})", ["\\frac{3+\\sqrt{5}}{2}", "1.5+\\frac{\\sqrt{5}}{2}"], ["3+\\sqrt{5}", "\\frac{3-\\sqrt{5}}{2}"]),
 ("1, -2", ["-2, 1", "1,-2", "x=1, x=-2"], ["1, 2", "1"]),
 ("3 + 4i", ["4i+3", "3+4i"], ["3-4i", "4+3i"]),
 ("\\ln 8", ["3\\ln 2", "\\ln(8)"], ["\\ln 6", "8"]),
 ("e^2", ["e^{2}", "\\exp(2)"], ["2e", "e^3"]),
 ("\\infty", ["\\infty", "+\\infty"], ["-\\infty", "0"]),
 ("\\dfrac{16}{3}", ["\\frac{16}{3}", "5\\frac{1}{3}", "5.\\overline{3}"], ["\\frac{3}{16}", "5.3"]),
 ("20\\text{ cm}^2", ["20", "20\\text{ cm}^{2}", "20 \\text{cm}^2"], ["40", "21"]),
 ("\\frac{5}{36}", ["\\dfrac{5}{36}", "5/36"], ["\\frac{1}{36}", "\\frac{5}{6}"]),
 ("8.5", ["\\frac{17}{2}", "8\\frac{1}{2}", "8.50"], ["8", "85"]),
 ("(2,3,4)", ["(2, 3, 4)", "\\left(2,3,4\\right)"], ["(4,3,2)", "(2,3)"]),
 ("[1,4]", ["[1, 4]", "1 \\le x \\le 4"], ["(1,4)", "[1,5]"]),
 ("x\\in(0,1)", ["(0,1)", "0<x<1"], ["[0,1]", "(0,2)"]),
 ("\\sqrt[3]{2}", ["2^{1/3}", "\\sqrt[3]2"], ["\\sqrt{2}", "\\sqrt[3]{3}"]),
 ("-\\sqrt{3}", ["-\\sqrt3", "-1\\sqrt{3}"], ["\\sqrt{3}", "-3"]),
 ("\\frac{2}{3}\\pi", ["\\frac{2\\pi}{3}", "2\\pi/3"], ["\\frac{3}{2}\\pi", "\\frac{2}{3}"]),
 ("27", ["27.0", "3^3", "27 \\text{ students}", "\\boxed{27}"], ["26", "28"]),
]


def math_cases():
    "(predicted, reference, equal?) from MATH: every rewrite labelled True, every near miss False."
    return [(p, ref, True) for ref, same, _ in MATH for p in same] + [(p, ref, False) for ref, _, diff in MATH for p in diff]


def tiny_cases():
    "(predicted, reference, equal?) from the tiny world's math answers, in the forms a policy writes them."
    rng, out = random.Random(0), []
    ds = tiny_math()
    for r in list(ds["test"]) + list(ds["train"].select(range(60))):
        a, n = r["answer"], int(r["answer"])
        item = r["prompt"][-1]["content"].split("How many ")[1].split()[0]
        kind = rng.randrange(8)
        forms = {0: (a, True), 1: (f"{n}.0", True), 2: (f"{n} \\text{{ {item}}}", True), 3: (f"{n + 1}", False),
                 4: (f"{n - 1}", False), 5: (f"{n * 10}", n == 0), 6: (f" {n} ", True), 7: (f"{-n}", n == 0)}
        p, label = forms[kind]
        out.append((p, a, label))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drgrpo-path", help="folder with DR-GRPO's math_grader.py (and pylatexenc importable)")
    a = ap.parse_args()
    graders = {"math_verify": lambda p, r: math_equal(p, r)}
    if a.drgrpo_path:
        sys.path.insert(0, a.drgrpo_path)
        import math_grader as dr

        def drgrpo(p, r):
            try:
                with dr.timeout(3): return dr.boxed_reward_fn("\\boxed{" + p + "}", "\\boxed{" + r + "}", fast=True)[1] == 1.0
            except Exception: return False
        graders["drgrpo"] = drgrpo
    for name, cases in (("tiny", tiny_cases()), ("math", math_cases())):
        for g, fn in graders.items():
            t = time.perf_counter()
            wrong = [(p, r, w) for p, r, w in cases if bool(fn(p, r)) != w]
            print(f"{name:5s} {g:12s} {len(cases) - len(wrong)}/{len(cases)} as labelled ({time.perf_counter() - t:.1f} s)")
            for row in wrong: print("    ", json.dumps(row))


if __name__ == "__main__":
    main()
