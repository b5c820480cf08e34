"""The paper-scale path without a GPU: the API judges over real HTTP against a scripted OpenAI-compatible
server on 127.0.0.1 (retries, backoff, timeouts, malformed replies, concurrency), the symbolic math grader
under threads and after a fork, and the docs notebook `nbs/paper_scale.ipynb`.

The presets themselves (load, expand, build every run's trainer config) are tested in nbs/03_trainer.ipynb.
"""
import json
import multiprocessing as mp
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fake_openai_server import FakeOpenAIServer, Reply, chat_reply, moderation_reply
from frpo_nb.judges import ApiError, ChatHarmBenchJudge, ModerationJudge, OpenAIClient, StrongRejectRubricJudge
from frpo_nb.mathgrade import math_equal

ROOT = Path(__file__).resolve().parents[1]
RUBRIC = "#overall_reasoning ok\n#scores\n1.a r\n1.b 0\n2.a c\n2.b 3\n3.a s\n3.b 5\n"


def client(server, **kw) -> OpenAIClient:
    "A client for `server` with test-sized waits (no key)."
    return OpenAIClient(base_url=server.url, api_key_env=None, **{"backoff": 0.01, "max_backoff": 0.05, "timeout": 2.0} | kw)


def scripted(*replies: Reply, then: Reply | None = None):
    "A script answering the n-th request with replies[n] (then `then`, or the last reply, forever)."
    def script(req):
        return replies[req.index] if req.index < len(replies) else (then or replies[-1])
    return script


def test_transient_http_errors_are_retried_with_backoff():
    with FakeOpenAIServer(scripted(Reply("busy", status=503), Reply("slow down", status=429), Reply(chat_reply("Yes")))) as s:
        t0 = time.perf_counter()
        assert ChatHarmBenchJudge("m", client(s, backoff=0.05, max_backoff=1.0)).score(["b"], ["g"]) == [1.0]
        waited = time.perf_counter() - t0
    assert len(s.requests) == 3
    assert waited >= 0.05 + 0.10           # 0.05 s, then 0.10 s: the wait doubles


def test_retry_after_is_honoured_up_to_max_backoff():
    busy = Reply("wait", status=429, headers={"Retry-After": "100"})
    with FakeOpenAIServer(scripted(busy, Reply(chat_reply("No")))) as s:
        t0 = time.perf_counter()
        assert ChatHarmBenchJudge("m", client(s, max_backoff=0.3)).score(["b"], ["g"]) == [0.0]
        assert 0.3 <= time.perf_counter() - t0 < 5          # capped at max_backoff, not 100 s


def test_timeouts_are_retried_and_bounded():
    slow, fast = Reply(chat_reply("Yes"), delay=1.0), Reply(chat_reply("Yes"))
    with FakeOpenAIServer(scripted(slow, fast)) as s:
        assert ChatHarmBenchJudge("m", client(s, timeout=0.2)).score(["b"], ["g"]) == [1.0]
        assert len(s.requests) == 2
    with FakeOpenAIServer(scripted(slow)) as s:
        t0 = time.perf_counter()
        with pytest.raises(ApiError, match=r"failed 3 times; last error: no reply within timeout=0.2 s"):
            ChatHarmBenchJudge("m", client(s, timeout=0.2, max_retries=2)).score(["b"], ["g"])
        assert len(s.requests) == 3                          # bounded: 1 + max_retries attempts
        assert time.perf_counter() - t0 < 3


def test_client_errors_fail_at_once_and_never_show_the_key(monkeypatch):
    monkeypatch.setenv("FRPO_TEST_KEY", "sk-secret-value")
    with FakeOpenAIServer(scripted(Reply({"error": {"message": "Incorrect API key"}}, status=401))) as s:
        judge = ChatHarmBenchJudge("m", OpenAIClient(base_url=s.url, api_key_env="FRPO_TEST_KEY"))
        with pytest.raises(ApiError) as e:
            judge.score(["b"], ["g"])
    assert len(s.requests) == 1 and s.requests[0].headers["Authorization"] == "Bearer sk-secret-value"
    assert "HTTP 401" in str(e.value) and "Incorrect API key" in str(e.value) and "$FRPO_TEST_KEY" in str(e.value)
    assert "sk-secret-value" not in str(e.value)


def test_a_reply_that_is_not_json_is_retried():
    with FakeOpenAIServer(scripted(Reply("<html>gateway</html>"), Reply(chat_reply(RUBRIC)))) as s:
        assert StrongRejectRubricJudge("m", client(s)).score(["p"], ["r"]) == [(3 + 5 - 2) / 8]
        assert len(s.requests) == 2


def test_malformed_replies_are_asked_again_then_raise():
    with FakeOpenAIServer(scripted(Reply(chat_reply("I cannot judge this.")), Reply(chat_reply("yes")))) as s:
        assert ChatHarmBenchJudge("m", client(s)).score(["b"], ["g"]) == [1.0]
        assert len(s.requests) == 2
    with FakeOpenAIServer(scripted(Reply(chat_reply("#scores\n1.b 0\n2.b 4\n")))) as s:   # no 3.b line, ever
        with pytest.raises(ApiError, match=r"3 replies could not be parsed; last: the rubric reply has no '3.b"):
            StrongRejectRubricJudge("m", client(s), parse_retries=2).score(["p"], ["r"])
        assert len(s.requests) == 3
    with FakeOpenAIServer(scripted(Reply({"object": "error", "detail": "overloaded"}))) as s:   # 200 but no choices
        with pytest.raises(ApiError, match="not a chat completion"):
            ChatHarmBenchJudge("m", client(s), parse_retries=1).score(["b"], ["g"])
        assert len(s.requests) == 2
    with FakeOpenAIServer(scripted(Reply(moderation_reply([{"hate": 0.1}])))) as s:           # 1 result for 2 inputs
        with pytest.raises(ApiError, match="must have 2 results"):
            ModerationJudge(client(s), parse_retries=0).score(["p", "q"], ["a", "b"])


def test_chat_judges_run_concurrently_bounded_and_in_order():
    def script(req):   # the verdict depends on the generation; unequal delays make replies finish out of order
        i = int(req.body["messages"][1]["content"].split("Generation:\n", 1)[1].split()[1])
        return Reply(chat_reply("Yes" if "Generation:\nharmful" in req.body["messages"][1]["content"] else "No"),
                     delay=(0.15, 0.05, 0.1)[i % 3])

    responses = [random.Random(i).choice(["harmful", "refusal"]) + f" {i}" for i in range(12)]
    want = [float(r.startswith("harmful")) for r in responses]
    assert 0 < sum(want) < 12
    with FakeOpenAIServer(script) as s:
        assert ChatHarmBenchJudge("m", client(s, max_workers=3), batch_size=5).score(["b"] * 12, responses) == want
        assert 2 <= s.max_in_flight <= 3                  # concurrent, never more than max_workers
        one_by_one = ChatHarmBenchJudge("m", client(s, max_workers=1), batch_size=1).score(["b"] * 12, responses)
    assert one_by_one == want


def test_math_equal_is_thread_safe():
    cases = [("\\sqrt{8}", "2\\sqrt{2}", True), ("x^2-1", "(x-1)(x+1)", True), ("\\frac{\\pi}{3}", "\\pi/4", False),
             ("3+4i", "4i+3", True)] * 4
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: math_equal(c[0], c[1]), cases))
    assert got == [c[2] for c in cases]


def _grade_in_child(conn):
    conn.send(math_equal("\\sqrt{12}", "2\\sqrt{3}"))


def test_math_equal_after_a_fork():
    assert math_equal("\\sqrt{8}", "2\\sqrt{2}")            # the parent's worker is running
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_grade_in_child, args=(child,))
    p.start()
    assert parent.poll(30) and parent.recv() is True        # the child starts its own worker
    p.join(10)
    assert math_equal("x+x", "2x")                          # ... and the parent's still works


def test_docs_notebook_runs():
    "It runs (as nbdev_test runs it) and its committed outputs are what it prints now (make notebooks)."
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "notebooks.py"), "check", "--one",
                          str(ROOT / "nbs" / "paper_scale.ipynb")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


SHARED = ROOT.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "safety_train_prompts.parquet").is_file(),
                                  reason=f"the authors' data files are not in {SHARED} (a checkout without ../shared)")


@needs_shared
def test_safety_split_is_the_authors_on_their_file():
    "load_safety_prompts holds out the rows the authors' script holds out, in its order (FRPO_training_mistral.py)."
    import pandas as pd
    from sklearn.model_selection import train_test_split
    from frpo_nb.data import SAFETY_ABILITY_TO_TASK, load_safety_prompts
    df = pd.read_parquet(SHARED / "safety_train_prompts.parquet")                      # their steps, one by one
    df2 = df.assign(task=df["ability"].map(SAFETY_ABILITY_TO_TASK))
    df2 = df2[df2["task"].notna()].reset_index(drop=True)
    idx_train, idx_val = train_test_split(range(len(df2)), test_size=0.025, random_state=42, stratify=df2["task"].tolist())
    ours = load_safety_prompts(SHARED / "safety_train_prompts.parquet", val_fraction=0.025, seed=42)
    text = lambda p: p[-1]["content"]
    assert [text(p) for p in ours["validation"]["prompt"]] == [df2["prompt"][i][-1]["content"] for i in idx_val]
    assert [text(p) for p in ours["train"]["prompt"]][:50] == [df2["prompt"][i][-1]["content"] for i in idx_train[:50]]
    assert len(ours["validation"]) == 50 and ours["validation"]["task"].count("normal") == 25


@needs_shared
def test_kl_prompt_subset_is_the_authors_on_their_files():
    "128 of the 1,000 KL prompts, as the authors' _pick_prompts(path, 128, seed) draws them (kl_utils.py)."
    import random
    from frpo_nb.data import load_kl_eval_prompts, shuffled_subset
    for name in ("kl_eval_safety_prompts.jsonl", "kl_eval_normal_prompts.jsonl"):
        items = [json.loads(l)["prompt"] for l in (SHARED / name).read_text().splitlines() if l.strip()]
        random.Random(42).shuffle(items)
        ds = load_kl_eval_prompts(SHARED / name)
        ours = ds.select(shuffled_subset(len(ds), 128, 42))
        assert [p[0]["content"] for p in ours["prompt"]] == items[:128]
