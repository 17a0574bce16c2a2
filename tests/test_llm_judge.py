"""The LLM judge client against a real HTTP server on localhost: both presentation orders, the on-disk
cache, retries on malformed replies and server errors, resuming after a failure, the key kept secret."""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atkd.eval.llm_judge import JudgeConfig, JudgeError, LLMJudge, parse_scores, ratio

SECRET = "sk-test-very-secret-0123456789"


class Behaviour:
    """What the fake endpoint does next (changed by the tests between and during runs)."""

    def __init__(self) -> None:
        self.malformed = 0  # the next N replies are prose without scores
        self.fail_after: int | None = None  # after this many good replies, answer HTTP 500 forever
        self.status_once: list[int] = []  # statuses to return before behaving (e.g. 429, 503)
        self.slow_once = 0.0  # sleep this long before the next reply (client timeouts)
        self.good = 0
        self.requests = 0
        self.auth: list[str | None] = []


def _answers(prompt: str) -> tuple[str, str]:
    found = re.findall(r"\[The Start of Assistant \d's Answer\]\n(.*?)\n\[The End", prompt, re.S)
    return found[0], found[1]


def make_handler(state: Behaviour):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _send(self, code: int, payload: dict | str, headers: dict | None = None) -> None:
            body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802 - http.server's naming
            state.requests += 1
            state.auth.append(self.headers.get("Authorization"))
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": "not found"})
            if state.slow_once:
                delay, state.slow_once = state.slow_once, 0.0
                threading.Event().wait(delay)
            if state.status_once:
                code = state.status_once.pop(0)
                return self._send(code, {"error": "busy"}, {"Retry-After": "0"})
            if state.fail_after is not None and state.good >= state.fail_after:
                return self._send(500, {"error": "down"})
            if state.malformed:
                state.malformed -= 1
                content = "Both answers are fine, I would say."
            else:
                a1, a2 = _answers(request["messages"][1]["content"])
                base = {True: 8, False: 4}
                # A position-biased judge: the first answer gets one point more.
                content = f"{base['correct' in a1] + 1} {base['correct' in a2]}\nBecause."
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


def judge(url: str, tmp_path, **kw) -> LLMJudge:
    cfg = JudgeConfig(url=url, model="fake-judge", api_key_env="ATKD_TEST_JUDGE_KEY", **kw)
    return LLMJudge(cfg, tmp_path / "cache.sqlite", sleep=lambda s: None)


ITEMS = [
    {"question": f"Question {i}?", "answer": "correct" if i % 2 else "wrong", "reference": "correct answer"}
    for i in range(6)
]


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


def test_malformed_replies_are_retried_then_fail_clearly(server, tmp_path):
    url, state = server
    state.malformed = 2
    j = judge(url, tmp_path, max_retries=3)
    assert j.judge_pair("Q?", "wrong", "correct") == (4.5, 8.5)
    assert state.requests == 2 + 2  # two good judgements after two malformed replies
    state.malformed = 10
    strict = judge(url, tmp_path / "strict", max_retries=1)
    with pytest.raises(JudgeError, match="no judgement after 2 attempts: unusable reply"):
        strict.judge_pair("Another?", "wrong", "correct")


def test_server_failing_midway_loses_nothing_and_the_run_resumes(server, tmp_path):
    url, state = server
    state.fail_after = 5  # five good judgements, then HTTP 500 forever
    j = judge(url, tmp_path, max_retries=2)
    with pytest.raises(JudgeError, match="HTTP 500"):
        j.judge_all(ITEMS)
    assert len(j.cache) == 5  # every judgement that arrived is on disk
    state.fail_after = None
    sent = state.requests
    resumed = judge(url, tmp_path)
    pairs = resumed.judge_all(ITEMS)
    assert resumed.requests == 2 * len(ITEMS) - 5 == state.requests - sent  # only the missing ones
    assert pairs == judge(url, tmp_path / "fresh").judge_all(ITEMS)


def test_rate_limits_busy_servers_and_timeouts_are_retried(server, tmp_path):
    url, state = server
    state.status_once = [429, 503]
    j = judge(url, tmp_path, max_retries=3, timeout=0.5)
    assert j.rate("Q?", "wrong", "correct") == (5.0, 8.0)
    state.slow_once = 1.5  # longer than the timeout: the first attempt times out
    assert j.rate("Q2?", "correct", "wrong") == (9.0, 4.0)
    waits: list[float] = []
    limited = LLMJudge(
        JudgeConfig(url=url, model="fake-judge", requests_per_minute=60),
        tmp_path / "rl.sqlite",
        sleep=waits.append,
    )
    limited.rate("A?", "x", "y")
    limited.rate("B?", "x", "y")
    assert waits and 0 < waits[0] <= 1.0  # the second request waits for its slot


def test_errors_that_retrying_cannot_fix_fail_at_once(server, tmp_path):
    url, state = server
    state.status_once = [401]
    with pytest.raises(JudgeError, match="HTTP 401"):
        judge(url, tmp_path, max_retries=5).rate("Q?", "a", "b")
    assert state.requests == 1
    closed = judge("http://127.0.0.1:9/v1", tmp_path / "closed", max_retries=1)  # nothing listens there
    with pytest.raises(JudgeError, match="no judgement after 2 attempts"):
        closed.rate("Q?", "a", "b")


def test_the_key_is_sent_but_never_stored_or_logged(server, tmp_path, monkeypatch, caplog):
    url, state = server
    monkeypatch.setenv("ATKD_TEST_JUDGE_KEY", SECRET)
    state.malformed = 1  # also exercise the retry log line
    with caplog.at_level(logging.DEBUG):
        j = judge(url, tmp_path)
        j.judge_all(ITEMS[:2])
        j.close()
    assert state.auth[0] == f"Bearer {SECRET}"
    assert SECRET not in caplog.text
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


def test_cli_judges_a_runs_generations_and_resumes_from_its_cache(server, tmp_path, capsys):
    from atkd import cli
    from atkd.data.template import format_prompt

    url, state = server
    gens = tmp_path / "generations.jsonl"
    rows = [
        {
            "task": "dolly",
            "id": f"d{i}",
            "prompt": format_prompt(f"Q{i}", "ctx" if i else None),
            "answer": "correct" if i % 2 else "wrong",
            "reference": "correct ref",
            "scores": {"rougeL": 0.5},
        }
        for i in range(4)
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
    gens.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = [
        "judge",
        "--generations",
        str(gens),
        "--out",
        str(tmp_path / "j"),
        "--url",
        url,
        "--model",
        "m",
        "--meta",
        "run=kd/x",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    assert state.requests == 8  # four answers, two orders; the mmlu record is not judged
    metrics = (tmp_path / "j" / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "run,task,metric,value,n"
    assert metrics[1] == f"kd/x,dolly,llm_judge_ratio,{(2 * 4.5 + 2 * 8.5) / (4 * 8.5)},4"
    assert cli.main(argv) == 0 and state.requests == 8  # all cached
    lines = [json.loads(x) for x in (tmp_path / "j" / "judgements.jsonl").read_text().splitlines()]
    assert [x["judge"] for x in lines] == [4.5, 8.5, 4.5, 8.5]
