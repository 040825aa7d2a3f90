"""Every bad request gets its status and an OpenAI-style error body; the server keeps serving.

Also: a full queue answers 503 with Retry-After, and a client that disconnects frees its slot.
"""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from decode_gate import DecodeGate
from test_serve_support import LiveServer, bomb_png, data_url, png_bytes, tiny_engine

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    (root / "ok.png").write_bytes(png_bytes())
    (tmp_path_factory.mktemp("outside") / "secret.png").write_bytes(png_bytes())
    return root


@pytest.fixture(scope="module")
def engine():
    return tiny_engine()


@pytest.fixture(scope="module")
def gate(engine):
    return DecodeGate(engine.model)


@pytest.fixture(scope="module")
def server(media, engine, gate):
    from llava15.serve.app import create_app
    from llava15.serve.settings import ServeSettings

    settings = ServeSettings(api_key=KEY, media_dir=media, max_body_bytes=200_000,
                             max_image_pixels=300 * 300, max_images=2, max_prompt_tokens=300,
                             max_tokens_limit=1500, max_batch_size=1, max_queue=1)
    app = create_app(engine, settings)
    scheduler = app.state.scheduler
    submitted = []  # every job the server submits, in order
    submit = scheduler.submit
    scheduler.submit = lambda job: (submit(job), submitted.append(job))[0]
    with LiveServer(app) as live:
        live.jobs = submitted
        yield live


def post(server, body, headers=AUTH, **kwargs) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json=body, headers=headers, timeout=60,
                      **kwargs)


def ask(content, **extra) -> dict:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0,
            **extra}


def with_image(url: str, n: int = 1) -> list:
    return [{"type": "image_url", "image_url": {"url": url}}] * n + [{"type": "text", "text": "hi"}]


def assert_error(response: httpx.Response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert words.lower() in error["message"].lower(), error["message"]
    assert "Traceback" not in response.text


def test_api_key(server):
    assert_error(post(server, ask("hi"), headers={}), 401, "api key")
    assert_error(post(server, ask("hi"), headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(httpx.get(server.url + "/v1/models"), 401)
    assert post(server, ask("hi")).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200  # open for load balancers


@pytest.mark.parametrize("make, status, words", [
    (lambda m: ask("x" * 300_000), 413, "body"),
    (lambda m: ask(with_image(data_url(png_bytes((400, 400))))), 413, "pixels"),
    (lambda m: ask(with_image(data_url(bomb_png()))), 413, "pixels"),
    (lambda m: ask(with_image(data_url(bomb_png(10_000, 10_000)))), 413, "10000x10000"),
    (lambda m: ask(with_image(data_url(b"not an image at all"))), 400, "image"),
    (lambda m: ask(with_image(data_url(png_bytes()[:60]))), 400, "image"),  # truncated
    (lambda m: ask(with_image("data:image/png;base64,@@@"), ), 400, "base64"),
    (lambda m: ask(with_image(data_url(png_bytes()), n=3)), 400, "at most 2"),
    (lambda m: ask(with_image("http://127.0.0.1:9/x.png")), 400, "remote"),
    (lambda m: ask(with_image("../outside/secret.png")), 400, "media directory"),
    (lambda m: ask(with_image("/etc/passwd")), 400, "media directory"),
    (lambda m: ask("word " * 400), 400, "tokens"),
    (lambda m: ask("<image>\nhi"), 400, "<image>"),
    (lambda m: ask("hi", max_tokens=1501), 422, "max_tokens"),
    (lambda m: ask("hi", temperature=-1), 422, "temperature"),
    (lambda m: ask("hi", n=2), 422, "n"),
    (lambda m: {"messages": []}, 422, "messages"),
    (lambda m: {"messages": [{"role": "robot", "content": "hi"}]}, 422, "role"),
    (lambda m: {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant",
                                                                "content": "x"}]}, 400, "last"),
    (lambda m: {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     400, "alternate"),
    (lambda m: {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]},
     400, "first"),
])
def test_bad_requests(server, media, make, status, words):
    assert_error(post(server, make(media)), status, words)


def test_invalid_json_and_unknown_route(server):
    url = server.url + "/v1/chat/completions"
    json_type = {**AUTH, "Content-Type": "application/json"}
    assert_error(httpx.post(url, content=b"{not json", headers=json_type), 400, "json")
    assert_error(httpx.post(url, content=b"[1, 2]", headers=json_type), 400, "json object")
    assert_error(httpx.post(url, content=b"{}", headers=AUTH), 400, "json")  # no content type
    assert_error(httpx.get(server.url + "/v1/nothing", headers=AUTH), 404)


def test_local_image_under_media_dir_and_still_serving(server):
    assert post(server, ask(with_image("ok.png"))).status_code == 200
    assert post(server, ask(with_image("file://" + str(server_media_path(server))))).status_code == 200
    r = post(server, ask("hello again"))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"


def server_media_path(server):
    return server.server.config.app.state.settings.media_dir / "ok.png"


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def health(server) -> dict:
    return httpx.get(server.url + "/health").json()


def test_full_queue_503_and_disconnect_frees_the_slot(server, gate):
    """One slot, one queue place: a third request is refused with a retry hint; closing the
    running stream cancels its job, which leaves at the next step, and the queued request then
    runs. The gate holds every decoding step, so each job is provably still running (one token
    out of 1500) while the test looks, however fast tokens come."""
    long = ask("Tell me a long story.", max_tokens=1500, stream=True)
    submitted = len(server.jobs)
    gate.close()
    try:
        with httpx.Client(timeout=60, headers=AUTH) as first:
            with first.stream("POST", server.url + "/v1/chat/completions", json=long) as running:
                assert running.status_code == 200
                running_lines = running.iter_lines()  # keep it: dropping it closes the response
                assert '"role"' in next(running_lines)  # the job is submitted
                gate.wait_held()  # its first token is out; its first decoding step waits
                running_job = server.jobs[-1]
                assert health(server)["running"] == 1
                with httpx.Client(timeout=60, headers=AUTH) as second:
                    with second.stream("POST", server.url + "/v1/chat/completions", json=long) as queued:
                        assert queued.status_code == 200
                        wait_until(lambda: health(server)["queued"] == 1)
                        queued_job = server.jobs[-1]
                        refused = post(server, ask("hi"))
                        assert_error(refused, 503, "busy")
                        assert refused.headers["retry-after"] == "1"
                        assert len(server.jobs) == submitted + 2  # the refused one never reached the queue
                        running.close()  # the client goes away
                        first.close()
                        wait_until(running_job.cancelled.is_set)
                        gate.allow(1)  # the held step ends; the cancelled job leaves the batch
                        wait_until(lambda: health(server)["queued"] == 0)  # it took the freed slot
                        gate.wait_held()  # the queued job: its first token out, then held
                        assert health(server)["running"] == 1
                        lines = queued.iter_lines()
                        assert '"role"' in next(lines) and '"content"' in next(x for x in lines if x.startswith("data: "))
                        queued.close()
                        wait_until(queued_job.cancelled.is_set)
                        gate.allow(1)
        wait_until(lambda: health(server)["running"] == 0)
        # each ended by its cancellation after one token, not by its 1500-token budget
        assert len(running_job.tokens) == 1 and len(queued_job.tokens) == 1
    finally:
        gate.open()
    assert post(server, ask("still there?")).status_code == 200


def test_base64_payload_limit_before_decoding(server):
    big = "data:image/png;base64," + base64.b64encode(b"\0" * 150_000).decode()
    assert_error(post(server, ask(with_image(big))), 413)
