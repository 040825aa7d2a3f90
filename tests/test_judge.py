"""The GPT-judge client against a local OpenAI-compatible stub server (127.0.0.1, port 0),
and the official judge prompts and rules (eval_gpt_review_bench.py, mm-vet_evaluator.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llava15.eval.judge import (JudgeClient, JudgeError, llavabench_content, mmvet_grade,
                                mmvet_question, parse_mmvet_score)


class StubServer:
    """Serves queued (status, reply text) pairs in order; records every request body."""

    def __init__(self, replies: list[tuple[int, str]]):
        self.replies, self.requests = list(replies), []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body,
                                      "auth": self.headers.get("Authorization")})
                status, text = stub.replies.pop(0) if stub.replies else (500, "")
                payload = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def client(url: str, tmp_path, **kw) -> JudgeClient:
    return JudgeClient(url, "judge-model", api_key="k", cache_dir=tmp_path / "cache",
                       sleep=lambda s: None, **kw)


def test_chat_posts_openai_shape_and_caches(tmp_path):
    with StubServer([(200, "8 7\nfine")]) as stub:
        c = client(stub.url, tmp_path)
        messages = [{"role": "user", "content": "hi"}]
        assert c.chat(messages, temperature=0.2, max_tokens=5) == "8 7\nfine"
        assert c.chat(messages, temperature=0.2, max_tokens=5) == "8 7\nfine"   # from cache
        again = client(stub.url, tmp_path)                                       # a re-run
        assert again.chat(messages, temperature=0.2, max_tokens=5) == "8 7\nfine"
    assert len(stub.requests) == 1 and again.requests_sent == 0
    req = stub.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer k"
    assert req["body"] == {"model": "judge-model", "messages": messages, "temperature": 0.2,
                           "max_tokens": 5}


def test_retries_transient_errors_with_backoff(tmp_path):
    waits = []
    with StubServer([(500, ""), (429, ""), (200, "ok")]) as stub:
        c = JudgeClient(stub.url, "m", sleep=waits.append, backoff_s=0.5)
        assert c.chat([{"role": "user", "content": "x"}], 0.0, 3) == "ok"
    assert waits == [0.5, 1.0] and len(stub.requests) == 3


def test_gives_up_and_does_not_retry_client_errors(tmp_path):
    with StubServer([(500, "")] * 3) as stub:
        c = JudgeClient(stub.url, "m", sleep=lambda s: None, max_retries=2)
        with pytest.raises(JudgeError, match="3 attempts"):
            c.chat([{"role": "user", "content": "x"}], 0.0, 3)
    with StubServer([(401, "")]) as stub:
        c = JudgeClient(stub.url, "m", sleep=lambda s: None)
        with pytest.raises(JudgeError, match="HTTP 401"):
            c.chat([{"role": "user", "content": "x"}], 0.0, 3)
        assert len(stub.requests) == 1


def test_cache_keeps_grading_runs_apart(tmp_path):
    """The same request in run 1 is asked again (a repeated evaluation), and both runs' replies
    are cached: rerunning both sends nothing."""
    with StubServer([(200, "0.3"), (200, "0.9")]) as stub:
        c = client(stub.url, tmp_path)
        assert mmvet_grade(c, "Q?", "a", "p", run=0)[0] == 0.3
        assert mmvet_grade(c, "Q?", "a", "p", run=1)[0] == 0.9
        assert mmvet_grade(c, "Q?", "a", "p", run=0)[0] == 0.3
        assert mmvet_grade(c, "Q?", "a", "p", run=1)[0] == 0.9
    assert len(stub.requests) == 2
    assert stub.requests[0]["body"] == stub.requests[1]["body"]  # nothing run-specific is sent


def test_mmvet_retry_rule(tmp_path):
    # unparsable, out of range, then a valid score: asked 3 times, temperatures 0, 0, 0.5
    with StubServer([(200, "The score"), (200, "1.5"), (200, "0.6 ok")]) as stub:
        score, content = mmvet_grade(client(stub.url, tmp_path), "Q?", "a<AND>b", "pred")
    assert score == 0.6 and content == "0.6 ok"
    bodies = [r["body"] for r in stub.requests]
    assert [b["temperature"] for b in bodies] == [0.0, 0.0, 0.5]
    assert all(b["max_tokens"] == 3 for b in bodies)
    assert bodies[0]["messages"][0]["content"].endswith("\nQ? | a <AND> b | pred | ")
    assert bodies[1]["messages"][0]["content"].endswith(
        "\nQ? | a <AND> b | pred | \nPredict the correctness of the answer (digit): ")


def test_mmvet_gives_zero_after_five_retries(tmp_path):
    with StubServer([(200, "x")] * 6) as stub:
        score, _ = mmvet_grade(client(stub.url, tmp_path), "Q?", "a", "p")
    assert score == 0.0 and len(stub.requests) == 6
    assert [r["body"]["temperature"] for r in stub.requests] == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]


def test_mmvet_prompt_and_parse():
    text = mmvet_question("What?", "x<OR>y", "z")
    assert text.startswith("Compare the ground truth and prediction from AI models")
    assert "\nQuestion | Ground truth | Prediction | Correctness\n--- | --- | --- | ---\n" in text
    assert text.endswith("| 1.0\n\nWhat? | x <OR> y | z | ")
    assert parse_mmvet_score("0.5") == 0.5 and parse_mmvet_score("1.0 x") == 1.0
    assert parse_mmvet_score("1.1") is None and parse_mmvet_score("-0.1") is None
    assert parse_mmvet_score(" 0.5") is None  # the first space-separated token is empty


def test_llavabench_content_layout():
    content = llavabench_content(["cap one", "cap two"], "Q?", "ref", "ours", "conv")
    assert content.startswith("[Context]\ncap one\ncap two\n\n[Question]\nQ?\n\n"
                              "[Assistant 1]\nref\n\n[End of Assistant 1]\n\n"
                              "[Assistant 2]\nours\n\n[End of Assistant 2]\n\n[System]\n"
                              "We would like to request your feedback")
    assert content.endswith("does not affect your judgment.\n\n")
    with pytest.raises(KeyError, match="llava_bench_other"):
        llavabench_content("c", "q", "r", "a", "other")
