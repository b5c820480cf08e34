"""Where and when the runs of a finished sweep ran, from their result.json: shared by tests/test_gpus.py
(a local sweep with --gpus) and tests/test_slurm.py (the Slurm backend)."""
import itertools
import json
from datetime import datetime
from pathlib import Path


def records(results: Path, run_ids) -> dict[str, dict]:
    "run_id -> result.json of the finished runs among `run_ids`."
    return {rid: json.loads((results / rid / "result.json").read_text()) for rid in run_ids
            if (results / rid / "result.json").is_file()}


def span(rec: dict) -> tuple[float, float]:
    "(start, end) of a run in seconds since the epoch."
    t = rec["timings"]
    return datetime.fromisoformat(t["started"]).timestamp(), datetime.fromisoformat(t["finished"]).timestamp()


def overlap(a: dict, b: dict) -> bool:
    (s1, e1), (s2, e2) = span(a), span(b)
    return s1 < e2 and s2 < e1


def gpu_set(rec: dict) -> set[str]:
    return {g for g in (rec["host"]["cuda_visible_devices"] or "").split(",") if g}


def check_disjoint(recs: dict[str, dict]) -> int:
    "Assert that runs that overlapped in time had disjoint GPUs and different ports; the number of overlapping pairs."
    pairs = 0
    for (i, a), (j, b) in itertools.combinations(recs.items(), 2):
        if not overlap(a, b): continue
        pairs += 1
        assert not gpu_set(a) & gpu_set(b), f"{i} and {j} ran at the same time on GPUs {gpu_set(a) & gpu_set(b)}"
        assert a["host"]["main_process_port"] != b["host"]["main_process_port"], f"{i} and {j} shared a port"
    return pairs


def max_concurrent(recs) -> int:
    "The largest number of the runs `recs` (result.json records) that were running at one moment."
    events = sorted(e for r in recs for e in ((span(r)[0], 1), (span(r)[1], -1)))
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak
