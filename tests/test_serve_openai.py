"""The server as real clients use it: the official `openai` client, httpx, and `predict` parity."""

from __future__ import annotations

import json

import httpx
import pytest
from test_serve_support import LiveServer, data_url, png_bytes, tiny_engine

openai = pytest.importorskip("openai", reason="the openai client is not installed (pip install openai)")


@pytest.fixture(scope="module")
def engine():
    return tiny_engine()


@pytest.fixture(scope="module")
def server(engine):
    from llava15.serve.app import create_app
    from llava15.serve.settings import ServeSettings

    with LiveServer(create_app(engine, ServeSettings(max_batch_size=8))) as live:
        yield live


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def image_message(text: str, image: bytes) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(image)}},
                                        {"type": "text", "text": text}]}


def test_completion_and_stream_through_the_openai_client(client):
    messages = [image_message("What is in the picture?", png_bytes())]
    done = client.chat.completions.create(model="tiny-llava", messages=messages, temperature=0,
                                          max_tokens=24)
    answer = done.choices[0].message.content
    assert done.object == "chat.completion" and done.model == "tiny-llava"
    assert done.choices[0].message.role == "assistant" and isinstance(answer, str) and answer
    assert done.choices[0].finish_reason in ("stop", "length")
    assert done.usage.completion_tokens <= 24 and done.usage.prompt_tokens > 16  # 16 image tokens
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens

    chunks = list(client.chat.completions.create(
        model="tiny-llava", messages=messages, temperature=0, max_tokens=24, stream=True,
        stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == answer
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [done.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == done.usage.completion_tokens


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny-llava"]
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny-llava"


def test_sse_wire_format_ends_with_done(server):
    body = {"messages": [{"role": "user", "content": "Hello"}], "stream": True, "max_tokens": 5,
            "temperature": 0}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0][6:])
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_greedy_answer_equals_predict(engine, client, tmp_path):
    """`predict` (the model_vqa_loader protocol) and the server give the same greedy answer."""
    from llava15.infer.generate import SamplingParams
    from llava15.infer.predict import predict, read_questions

    (tmp_path / "img.png").write_bytes(png_bytes((50, 40), (10, 160, 40)))
    question = "What colour is the square?"
    (tmp_path / "q.jsonl").write_text(json.dumps({"question_id": 1, "image": "img.png",
                                                  "text": question}) + "\n")
    predict(engine, read_questions(tmp_path / "q.jsonl"), tmp_path, tmp_path / "a.jsonl",
            SamplingParams(max_new_tokens=20, temperature=0))
    expected = json.loads((tmp_path / "a.jsonl").read_text())["text"]
    served = client.chat.completions.create(
        model="tiny-llava", temperature=0, max_tokens=20,
        messages=[image_message(question, (tmp_path / "img.png").read_bytes())])
    assert served.choices[0].message.content == expected


def test_multi_turn_with_an_image_in_an_earlier_turn(engine, client):
    """An image in the first turn renders as the CLI renders it: `<image>\\n` before the text."""
    from llava15.infer.engine import Request
    from llava15.infer.generate import SamplingParams

    image = png_bytes((32, 32), (240, 200, 10))
    turns = [("user", "<image>\nWhat is this?"), ("assistant", "A yellow square."),
             ("user", "And its colour?")]
    expected = engine.generate([Request(engine.build_prompt(turns), [image],
                                        SamplingParams(max_new_tokens=16))])[0]
    served = client.chat.completions.create(model="tiny-llava", temperature=0, max_tokens=16, messages=[
        image_message("What is this?", image), {"role": "assistant", "content": "A yellow square."},
        {"role": "user", "content": [{"type": "text", "text": "And its colour?"}]}])
    assert served.choices[0].message.content == expected


def test_a_system_message_replaces_the_templates_system_prompt(engine, client):
    import dataclasses

    from llava15.data.conversation import render_prompt
    from llava15.infer.engine import Request
    from llava15.infer.generate import SamplingParams

    def answer(prompt: str) -> str:
        return engine.generate([Request(prompt, [], SamplingParams(max_new_tokens=12))])[0]

    turns = [("user", "Name a colour."), ("assistant", None)]
    custom = answer(render_prompt(dataclasses.replace(engine.template, system="Be brief."), turns))
    assert custom != answer(render_prompt(engine.template, turns))  # the test can tell them apart
    served = client.chat.completions.create(model="tiny-llava", temperature=0, max_tokens=12, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}])
    assert served.choices[0].message.content == custom


def test_stop_strings_cut_the_answer_streamed_or_not(engine, client):
    from llava15.infer.engine import Request
    from llava15.infer.generate import SamplingParams

    messages = [{"role": "user", "content": "Say something long."}]
    full = client.chat.completions.create(model="tiny-llava", messages=messages, temperature=0,
                                          max_tokens=30).choices[0].message.content
    stop = full[len(full) // 2:len(full) // 2 + 3]
    assert len(stop.strip()) == 3, full
    prompt = engine.build_prompt([("user", "Say something long.")])
    expected = engine.generate([Request(prompt, [], SamplingParams(max_new_tokens=30, stop=(stop,)))])[0]
    assert stop not in expected and len(expected) < len(full)
    done = client.chat.completions.create(model="tiny-llava", messages=messages, temperature=0,
                                          max_tokens=30, stop=[stop, "never-seen"])
    assert done.choices[0].message.content == expected
    assert done.choices[0].finish_reason == "stop"
    chunks = client.chat.completions.create(model="tiny-llava", messages=messages, temperature=0,
                                            max_tokens=30, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == expected
