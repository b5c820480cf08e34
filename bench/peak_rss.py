"""Run a command and report its wall time and the peak memory of its whole process tree (sweep workers and
their papermill kernels included, which `/usr/bin/time` does not see), sampled every `--every` seconds.

    .venv/bin/python bench/peak_rss.py [--every 1] -- make study

Prints one JSON line at the end: wall_s, peak_tree_rss_mb (all processes together), peak_process_rss_mb (the
largest single process) and that process's command line. psutil is a dependency of jupyter, so it is there.
"""
import argparse, json, subprocess, sys, time

import psutil


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try: return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess: return []


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd: p.error("give the command after --")
    start = time.time()
    child = subprocess.Popen(cmd)
    root = psutil.Process(child.pid)
    peak_tree, peak_proc, peak_cmd = 0, 0, ""
    while child.poll() is None:
        total = 0
        for q in tree(root):
            try: rss, line = q.memory_info().rss, " ".join(q.cmdline())[:200]
            except (psutil.NoSuchProcess, psutil.AccessDenied): continue
            total += rss
            if rss > peak_proc: peak_proc, peak_cmd = rss, line
        peak_tree = max(peak_tree, total)
        time.sleep(a.every)
    print(json.dumps({"cmd": " ".join(cmd), "rc": child.returncode, "wall_s": round(time.time() - start, 1),
                      "peak_tree_rss_mb": round(peak_tree / 2**20), "peak_process_rss_mb": round(peak_proc / 2**20),
                      "peak_process": peak_cmd}))
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
