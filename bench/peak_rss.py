"""Run a command (or watch a running one) and report its wall time and the peak memory of its whole process tree
(sweep workers and their papermill kernels included, which `/usr/bin/time` does not see), sampled every `--every` s.

    .venv/bin/python bench/peak_rss.py [--every 1] [--pss] -- make study
    .venv/bin/python bench/peak_rss.py --pid PID [--every 5] --pss      # a tree that is already running

Prints one JSON line at the end: wall_s (of the sampling), peak_tree_rss_mb (all processes together),
peak_process_rss_mb (the largest single process) and its command line; with --pss also peak_tree_pss_mb, the
sum of proportional set sizes (shared pages divided among the processes that map them: the tree's real footprint;
summed RSS counts the shared torch/transformers pages once per process). psutil is a dependency of jupyter.
"""
import argparse, json, subprocess, sys, time

import psutil


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try: return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess: return []


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("--pss", action="store_true", help="also sum the proportional set sizes (reads /proc/PID/smaps)")
    p.add_argument("--pid", type=int, default=None, help="watch this running process's tree instead of a command")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if bool(cmd) == (a.pid is not None): p.error("give either a command after -- or --pid")
    start = time.time()
    child = subprocess.Popen(cmd) if cmd else None
    root = psutil.Process(child.pid if child else a.pid)
    running = (lambda: child.poll() is None) if child else root.is_running
    peak = {"rss": 0, "pss": 0, "proc": 0, "cmd": ""}
    while running():
        rss_sum = pss_sum = 0
        for q in tree(root):
            try:
                mem = q.memory_full_info() if a.pss else q.memory_info()
                line = " ".join(q.cmdline())[:200]
            except (psutil.NoSuchProcess, psutil.AccessDenied): continue
            rss_sum += mem.rss
            pss_sum += getattr(mem, "pss", 0)
            if mem.rss > peak["proc"]: peak["proc"], peak["cmd"] = mem.rss, line
        peak["rss"], peak["pss"] = max(peak["rss"], rss_sum), max(peak["pss"], pss_sum)
        time.sleep(a.every)
    mb = lambda b: round(b / 2**20)
    out = {"cmd": " ".join(cmd) if cmd else f"pid {a.pid}", "rc": child.returncode if child else None,
           "wall_s": round(time.time() - start, 1), "peak_tree_rss_mb": mb(peak["rss"]),
           "peak_process_rss_mb": mb(peak["proc"]), "peak_process": peak["cmd"]}
    if a.pss: out["peak_tree_pss_mb"] = mb(peak["pss"])
    print(json.dumps(out))
    sys.exit(child.returncode if child else 0)


if __name__ == "__main__":
    main()
