"""The LLM judge client against a real HTTP server on localhost: both presentation orders, the on-disk
cache (shared by processes and runs), retries on broken connections, malformed replies and server errors,
replies recorded as unparseable, resuming after a failure, the rate limit shared across processes,
per-seed rows under sampling, and the key kept secret."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from atkd.eval.llm_judge import (
    JudgeCache,
    JudgeConfig,
    JudgeError,
    LLMJudge,
    parse_scores,
    ratio,
    redact_url,
    retry_after_seconds,
)

SECRET = "sk-test-very-secret-0123456789"


class Behaviour:
    """What the fake endpoint does next (changed by the tests between and during runs)."""

    def __init__(self) -> None:
        self.malformed = 0  # the next N replies are prose without scores
        self.fail_after: int | None = None  # after this many good replies, answer HTTP 500 forever
        self.status_once: list[int] = []  # statuses to return before behaving (e.g. 429, 503)
        self.retry_after = "0"  # the Retry-After header sent with those statuses
        self.slow_once = 0.0  # sleep this long before the next reply (client timeouts)
        # Broken connections before behaving: "cut" (body shorter than its Content-Length), "garble"
        # (no HTTP status line), "drop" (closed without a reply); `break_after`: after N good, forever.
        self.breaks: list[str] = []
        self.break_after: int | None = None
        self.bodies: list[str] = []  # raw 200 bodies to send before behaving (invalid JSON, no choices)
        self.contents: list[str | None] = []  # message contents to send before behaving (None: null)
        self.prose_if: str | None = None  # answer prose whenever the prompt contains this text
        self.echo_auth = False  # a leaky server: put the Authorization header in status lines
        self.good = 0
        self.requests = 0
        self.auth: list[str | None] = []
        self.arrivals: list[tuple[float, str]] = []  # (time.time(), user prompt) of every request
        self.lock = threading.Lock()


def _answers(prompt: str) -> tuple[str, str]:
    found = re.findall(r"\[The Start of Assistant \d's Answer\]\n(.*?)\n\[The End", prompt, re.S)
    return found[0], found[1]


def make_handler(state: Behaviour):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, payload: dict | str, headers: dict | None = None, reason=None) -> None:
            body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(code, reason)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _break(self, how: str) -> None:
            self.close_connection = True
            if how == "cut":  # promise more than is sent, then close
                body = b'{"choices": [{"message": {"content": "8 4'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + 100))
                self.end_headers()
                self.wfile.write(body)
            elif how == "garble":
                self.wfile.write(
                    f"HTTQ/1.1 {self.headers.get('Authorization') if state.echo_auth else ''}\r\n".encode()
                )
            # "drop": close without a word

        def do_POST(self):  # noqa: N802 - http.server's naming
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = request["messages"][1]["content"]
            with state.lock:
                state.requests += 1
                state.auth.append(self.headers.get("Authorization"))
                state.arrivals.append((time.time(), prompt))
                broken = state.breaks.pop(0) if state.breaks else None
                if broken is None and state.break_after is not None and state.good >= state.break_after:
                    broken = "cut"
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": "not found"})
            if broken:
                return self._break(broken)
            if state.slow_once:
                delay, state.slow_once = state.slow_once, 0.0
                threading.Event().wait(delay)
            if state.status_once:
                code = state.status_once.pop(0)
                reason = f"Nope {self.headers.get('Authorization')}" if state.echo_auth else None
                return self._send(code, {"error": "busy"}, {"Retry-After": state.retry_after}, reason)
            if state.fail_after is not None and state.good >= state.fail_after:
                return self._send(500, {"error": "down"})
            if state.bodies:
                return self._send(200, state.bodies.pop(0))
            if state.contents:
                content = state.contents.pop(0)
            elif state.malformed or (state.prose_if and state.prose_if in prompt):
                state.malformed = max(0, state.malformed - 1)
                content = "Both answers are fine, I would say."
            else:
                a1, a2 = _answers(prompt)
                base = {True: 8, False: 4}
                # A position-biased judge: the first answer gets one point more.
                content = f"{base['correct' in a1] + 1} {base['correct' in a2]}\nBecause."
                with state.lock:
                    state.good += 1
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

    return Handler


@pytest.fixture
def server():
    state = Behaviour()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    httpd.shutdown()
    httpd.server_close()


def judge(url: str, tmp_path, model: str = "fake-judge", sleep=lambda s: None, **kw) -> LLMJudge:
    cfg = JudgeConfig(url=url, model=model, api_key_env="ATKD_TEST_JUDGE_KEY", **kw)
    return LLMJudge(cfg, tmp_path / "cache.sqlite", sleep=sleep, rate_file=tmp_path / "rate")


ITEMS = [
    {"question": f"Question {i}?", "answer": "correct" if i % 2 else "wrong", "reference": "correct answer"}
    for i in range(6)
]

# A child process for the cross-process tests: waits at a barrier (files), then judges or writes.
CHILD = """
import os, sys, time
from atkd.eval.llm_judge import JudgeCache, JudgeConfig, LLMJudge
mode, tag, barrier, url, cache, rate_file, n = sys.argv[1:8]
open(os.path.join(barrier, "ready-" + tag), "w").close()
while not os.path.exists(os.path.join(barrier, "go")):
    time.sleep(0.005)
if mode == "judge":
    cfg = JudgeConfig(url=url, model="fake-judge", api_key_env="ATKD_TEST_JUDGE_KEY", requests_per_minute=120)
    j = LLMJudge(cfg, cache, rate_file=rate_file)
    for i in range(int(n)):
        j.rate(f"{tag} {i}?", "correct", "wrong")
    j.close()
else:
    c = JudgeCache(cache)
    for i in range(int(n)):
        c.put(f"{tag}-{i}", "8 4", (8.0, 4.0))
        c.put(f"shared-{i % 50}", "8 4", (8.0, 4.0))
    c.close()
"""


def run_together(tmp_path, *argvs: list[str], timeout: float = 60) -> None:
    """Start one child per argv, release them at once, and check they all succeeded."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, argv[0], argv[1], str(barrier), *argv[2:]],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},  # the parent's atkd
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    deadline = time.time() + timeout
    while len(list(barrier.glob("ready-*"))) < len(procs) and time.time() < deadline:
        time.sleep(0.01)
    (barrier / "go").touch()
    for p in procs:
        _, err = p.communicate(timeout=max(1.0, deadline - time.time()))
        assert p.returncode == 0, err[-2000:]


def test_both_orders_cancel_the_position_bias(server, tmp_path):
    url, state = server
    j = judge(url, tmp_path)
    # student "wrong" (4) vs reference "correct" (8), the first position gets +1 in each order
    assert j.judge_pair("Q?", "wrong", "correct") == (4.5, 8.5)
    assert j.judge_pair("Q?", "correct too", "correct") == (8.5, 8.5)
    assert state.requests == 4
    pairs = j.judge_all(ITEMS)
    assert ratio(pairs) == pytest.approx((3 * 4.5 + 3 * 8.5) / (6 * 8.5))


def test_cache_means_a_rerun_sends_nothing(server, tmp_path):
    url, state = server
    first = judge(url, tmp_path).judge_all(ITEMS)
    sent = state.requests
    again = judge(url, tmp_path)
    assert again.judge_all(ITEMS) == first
    assert state.requests == sent and again.requests == 0
    assert len(again.cache) == 2 * len(ITEMS)
    other = judge(url, tmp_path, model="another-judge")  # the judge model is part of the key
    other.judge_all(ITEMS[:1])
    assert other.requests == 2


def _resumes_with_only_the_missing(url, state, tmp_path, judged):
    """A rerun on the same cache, against a now healthy server, asks only for what was not judged, and
    gives what a fresh run gives."""
    sent = state.requests
    resumed = judge(url, tmp_path)
    pairs = resumed.judge_all(ITEMS)
    assert resumed.requests == 2 * len(ITEMS) - judged == state.requests - sent  # only the missing ones
    assert pairs == judge(url, tmp_path / "fresh").judge_all(ITEMS)


def test_server_failing_midway_loses_nothing_and_the_run_resumes(server, tmp_path):
    url, state = server
    state.fail_after = 5  # five good judgements, then HTTP 500 forever
    j = judge(url, tmp_path, max_retries=2)
    with pytest.raises(JudgeError, match="HTTP 500"):
        j.judge_all(ITEMS)
    assert len(j.cache) == 5  # every judgement that arrived is on disk
    state.fail_after = None
    _resumes_with_only_the_missing(url, state, tmp_path, judged=5)


def test_errors_that_retrying_cannot_fix_fail_at_once(server, tmp_path):
    url, state = server
    state.status_once = [401]
    with pytest.raises(JudgeError, match="HTTP 401"):
        judge(url, tmp_path, max_retries=5).rate("Q?", "a", "b")
    assert state.requests == 1
    closed = judge("http://127.0.0.1:9/v1", tmp_path / "closed", max_retries=1)  # nothing listens there
    with pytest.raises(
        JudgeError, match="127.0.0.1:9/v1/chat/completions gave no judgement after 2 attempts"
    ):
        closed.rate("Q?", "a", "b")


@pytest.mark.parametrize("how", ["cut", "garble", "drop"])
def test_connections_broken_mid_reply_are_retried(server, tmp_path, how):
    url, state = server
    state.breaks = [how, how]
    j = judge(url, tmp_path, max_retries=3)
    assert j.judge_pair("Q?", "wrong", "correct") == (4.5, 8.5)
    assert state.requests == j.requests == 2 + 2  # two broken replies, then both orders


def test_a_server_that_always_breaks_fails_clearly_and_the_rerun_resumes(server, tmp_path, monkeypatch):
    url, state = server
    monkeypatch.setenv("ATKD_TEST_JUDGE_KEY", SECRET)
    state.break_after = 5  # five good judgements, then every body is cut short
    j = judge(url, tmp_path, max_retries=2)
    with pytest.raises(JudgeError) as failed:
        j.judge_all(ITEMS)
    message = str(failed.value)
    assert f"{url}/chat/completions" in message and "after 3 attempts: IncompleteRead" in message
    assert "5 judgement(s) are kept in the cache" in message and SECRET not in message
    assert len(j.cache) == 5  # every judgement that arrived is on disk
    state.break_after = None
    _resumes_with_only_the_missing(url, state, tmp_path, judged=5)


MALFORMED_BODIES = {
    "not JSON": "<html>502 Bad Gateway</html>",
    "cut JSON": '{"choices": [{"message": {"content": "8 4',
    "error envelope": '{"error": {"message": "overloaded"}}',
    "empty choices": '{"choices": []}',
    "null choices": '{"choices": null}',
    "no message": '{"choices": [{"text": "8 4"}]}',
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_replies_that_are_not_chat_completions_are_retried_then_fail_clearly(server, tmp_path, body):
    url, state = server
    state.bodies = [body, body]
    j = judge(url, tmp_path, max_retries=3)
    assert j.rate("Q?", "wrong", "correct") == (5.0, 8.0)
    assert state.requests == 3
    state.bodies = [body] * 3
    strict = judge(url, tmp_path / "strict", max_retries=2)
    with pytest.raises(JudgeError, match="no judgement after 3 attempts: unusable reply"):
        strict.rate("Other?", "wrong", "correct")
    assert len(strict.cache) == 0  # nothing recorded: a rerun asks again


UNUSABLE_ANSWERS = {"null": None, "empty": "", "prose": "Both are fine.", "out of range": "11 3\nGreat."}


@pytest.mark.parametrize("content", UNUSABLE_ANSWERS.values(), ids=UNUSABLE_ANSWERS.keys())
def test_unusable_judge_answers_are_retried_then_recorded_as_unparseable(server, tmp_path, content):
    url, state = server
    state.contents = [content, content]
    j = judge(url, tmp_path, max_retries=2)
    assert j.rate("Q?", "wrong", "correct") == (5.0, 8.0)  # a retry gets a usable answer
    assert state.requests == 3
    state.contents = [content] * 3
    assert j.judge_pair("Q2?", "wrong", "correct") is None
    assert state.requests == 3 + 3  # every attempt used, the other order not asked
    again = judge(url, tmp_path)
    assert again.judge_pair("Q2?", "wrong", "correct") is None and again.requests == 0  # recorded
    assert ratio([None, (4.5, 8.5)]) == pytest.approx(4.5 / 8.5)  # left out of the ratio


def test_rate_limits_busy_servers_and_timeouts_are_retried(server, tmp_path):
    url, state = server
    state.status_once = [429, 503]
    j = judge(url, tmp_path, max_retries=3, timeout=0.5)
    assert j.rate("Q?", "wrong", "correct") == (5.0, 8.0)
    state.slow_once = 1.5  # longer than the timeout: the first attempt times out
    assert j.rate("Q2?", "correct", "wrong") == (9.0, 4.0)
    waits: list[float] = []
    limited = judge(url, tmp_path / "rl", sleep=waits.append, requests_per_minute=60)
    limited.rate("A?", "x", "y")
    limited.rate("B?", "x", "y")
    assert waits and 0 < waits[0] <= 1.0  # the second request waits for its slot


def test_retry_after_as_seconds_or_http_date_is_honoured_and_capped(server, tmp_path):
    url, state = server
    waits: list[float] = []
    j = judge(url, tmp_path, sleep=waits.append, backoff=0.5)
    in_30s = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    tomorrow = email.utils.format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)
    yesterday = email.utils.format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    for i, header in enumerate([in_30s, tomorrow, "7", "3600", yesterday, "soon"]):
        state.status_once, state.retry_after = [503], header
        assert j.rate(f"Q{i}?", "wrong", "correct") == (5.0, 8.0)
    assert 28 <= waits[0] <= 30  # the date, 30 s ahead (HTTP dates have whole seconds)
    assert waits[1:] == [60.0, 7.0, 60.0, 0.5, 0.5]  # capped at 60 s; past or unreadable: the backoff


def test_rate_limit_is_shared_across_processes(server, tmp_path):
    url, state = server
    cache, rate = tmp_path / "cache.sqlite", tmp_path / "rate"
    run_together(
        tmp_path,
        ["judge", "p1", url, str(cache), str(rate), "3"],
        ["judge", "p2", url, str(cache), str(rate), "3"],
    )
    times = sorted(t for t, _ in state.arrivals)
    assert len(times) == 6
    assert sum("p1 " in p for _, p in state.arrivals) == sum("p2 " in p for _, p in state.arrivals) == 3
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.5 - 0.1, gaps  # 120 rpm over both processes: one request per 0.5 s


def test_one_cache_file_takes_concurrent_writers(tmp_path):
    cache = tmp_path / "shared.sqlite"
    n = 50
    run_together(
        tmp_path, ["put", "a", "-", str(cache), "-", str(n)], ["put", "b", "-", str(cache), "-", str(n)]
    )
    c = JudgeCache(cache)
    assert len(c) == 2 * n + 50 and c.get("a-0") == c.get(f"b-{n - 1}") == (8.0, 4.0)


def test_the_key_is_sent_but_never_stored_logged_or_raised(server, tmp_path, monkeypatch, caplog):
    url, state = server
    monkeypatch.setenv("ATKD_TEST_JUDGE_KEY", SECRET)
    state.malformed = 1  # also exercise the retry log line
    state.echo_auth = True  # a server that repeats the key in its status lines
    state.breaks = ["garble"]
    with caplog.at_level(logging.DEBUG):
        j = judge(url, tmp_path)
        j.judge_all(ITEMS[:2])
        state.status_once = [401]
        with pytest.raises(JudgeError, match=r"HTTP 401 Nope Bearer \*\*\*") as unauthorized:
            j.rate("Q?", "a", "b")
        state.breaks = ["garble"] * 2
        with pytest.raises(JudgeError, match="BadStatusLine") as broken:
            judge(url, tmp_path, max_retries=1).rate("Q2?", "a", "b")
        j.close()
    assert state.auth[0] == f"Bearer {SECRET}"
    assert "***" in caplog.text and SECRET not in caplog.text
    assert SECRET not in str(unauthorized.value) + str(broken.value)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_parse_scores_and_config_checks():
    assert parse_scores("8 6\nbecause") == (8.0, 6.0)
    assert parse_scores("\n 7.5, 9 \n") == (7.5, 9.0)
    for bad in ("8", "eight six", "11 3", "0 5", ""):
        with pytest.raises(ValueError):
            parse_scores(bad)
    with pytest.raises(ValueError, match="http"):
        JudgeConfig(url="localhost:8000", model="m")
    with pytest.raises(ValueError, match="requests_per_minute"):
        JudgeConfig(url="http://x/v1", model="m", requests_per_minute=0)
    assert redact_url(f"https://user:{SECRET}@api.example.org:8443/v1?key={SECRET}") == (
        "https://api.example.org:8443/v1"
    )
    assert retry_after_seconds(None) == retry_after_seconds("") == retry_after_seconds("nan") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def _generations(path: Path, answers: list[str], seeds: list[int | None] | None = None) -> Path:
    from atkd.data.template import format_prompt

    rows = [
        {
            "task": "dolly",
            "id": f"d{i}",
            "prompt": format_prompt(f"Q{i}", "ctx" if i else None),
            "answer": answer,
            "reference": "correct ref",
            "scores": {"rougeL": 0.5},
        }
        | ({} if seeds is None else {"sample_seed": seed})
        for seed in (seeds or [None])
        for i, answer in enumerate(answers)
    ] + [
        {
            "task": "mmlu",
            "id": "m0",
            "prompt": format_prompt("Pick"),
            "answer": "A",
            "reference": "B",
            "scores": {"acc": 0.0},
        }
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _argv(gens: Path, out: Path, url: str, *extra: str) -> list[str]:
    return ["judge", "--generations", str(gens), "--out", str(out), "--url", url, "--model", "m", *extra]


def test_cli_judges_a_runs_generations_and_resumes_from_its_cache(server, tmp_path, capsys):
    from atkd import cli

    url, state = server
    gens = _generations(tmp_path / "generations.jsonl", ["wrong", "correct", "wrong", "correct"])
    argv = _argv(gens, tmp_path / "j", url, "--meta", "run=kd/x", "--no-progress")
    assert cli.main(argv) == 0
    assert state.requests == 8  # four answers, two orders; the mmlu record is not judged
    metrics = (tmp_path / "j" / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "run,task,metric,value,n"
    assert metrics[1] == f"kd/x,dolly,llm_judge_ratio,{(2 * 4.5 + 2 * 8.5) / (4 * 8.5)},4"
    assert cli.main(argv) == 0 and state.requests == 8  # all cached
    assert (tmp_path / "j" / "judge_cache.sqlite").is_file()  # the default cache: next to the scores
    lines = [json.loads(x) for x in (tmp_path / "j" / "judgements.jsonl").read_text().splitlines()]
    assert [x["judge"] for x in lines] == [4.5, 8.5, 4.5, 8.5]
    assert {x["sample_seed"] for x in lines} == {None}


def test_one_shared_cache_pays_once_for_answers_several_models_share(server, tmp_path):
    from atkd import cli

    url, state = server
    shared = tmp_path / "shared" / "judge.sqlite"
    a = _generations(tmp_path / "a" / "eval" / "generations.jsonl", ["wrong", "correct", "wrong"])
    b = _generations(tmp_path / "b" / "eval" / "generations.jsonl", ["wrong", "correct", "also correct"])
    assert cli.main(_argv(a, tmp_path / "a" / "judge", url, "--cache", str(shared), "--no-progress")) == 0
    assert state.requests == 6
    assert cli.main(_argv(b, tmp_path / "b" / "judge", url, "--cache", str(shared), "--no-progress")) == 0
    assert state.requests == 6 + 2  # only the answer model a did not give, in both orders
    other = [*_argv(b, tmp_path / "c", url, "--cache", str(shared), "--no-progress"), "--model", "m2"]
    assert cli.main(other) == 0 and state.requests == 8 + 6  # another judge model pays again
    assert not (tmp_path / "a" / "judge" / "judge_cache.sqlite").exists()


def test_sampled_generations_give_per_seed_rows_and_their_mean(server, tmp_path):
    from atkd import cli

    url, state = server
    state.prose_if = "gibberish"  # the judge never scores this answer: unparseable, left out
    gens = _generations(tmp_path / "generations.jsonl", ["wrong", "correct", "gibberish"], seeds=[10, 20])
    rows = [json.loads(x) for x in gens.read_text().splitlines()]
    rows[1]["answer"] = "wrong again"  # seed 10, second question: a different sample
    gens.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = _argv(gens, tmp_path / "j", url, "--meta", "run=kd/x", "--no-progress", "--max-retries", "0")
    assert cli.main(argv) == 0
    r10, r20 = 4.5 / 8.5, (4.5 + 8.5) / (2 * 8.5)
    assert (tmp_path / "j" / "metrics.csv").read_text().splitlines() == [
        "run,task,metric,value,n",
        f"kd/x,dolly,llm_judge_ratio@10,{r10},2",
        f"kd/x,dolly,llm_judge_ratio@20,{r20},2",
        f"kd/x,dolly,llm_judge_ratio,{(r10 + r20) / 2},2",
    ]
    lines = [json.loads(x) for x in (tmp_path / "j" / "judgements.jsonl").read_text().splitlines()]
    assert [(x["sample_seed"], x["judge"]) for x in lines] == [
        (10, 4.5),
        (10, 4.5),
        (10, None),
        (20, 4.5),
        (20, 8.5),
        (20, None),
    ]
    assert state.requests == (2 + 2 + 1) + (0 + 2 + 0)  # prompts already asked (seed 10) are not paid again
