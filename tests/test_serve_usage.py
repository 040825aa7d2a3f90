"""The image cost in the server's `usage`: `prompt_tokens` counts every image position,
`prompt_tokens_details` splits them into `image_tokens` and `text_tokens` (OpenAI's fields),
`image_encode_ms` says how long the vision tower took; in JSON answers and in the final
streamed chunk, for one-view and AnyRes models (where the count grows with the image size)."""

from __future__ import annotations

import json

import httpx
import pytest
from test_serve_support import LiveServer, data_url, png_bytes, tiny_engine

from llava15.infer.engine import Request
from llava15.infer.generate import SamplingParams

ANYRES = dict(image_aspect_ratio="anyres", image_grid_pinpoints=((56, 28), (28, 56), (56, 56), (84, 28)),
              mm_patch_merge_type="spatial_unpad")
QUESTION = "What is in the picture?"


def serve(engine):
    from llava15.serve.app import create_app
    from llava15.serve.settings import ServeSettings

    return LiveServer(create_app(engine, ServeSettings(max_batch_size=8)))


@pytest.fixture(scope="module")
def flat():
    engine = tiny_engine()
    with serve(engine) as live:
        yield engine, live


@pytest.fixture(scope="module")
def anyres():
    engine = tiny_engine(**ANYRES)
    with serve(engine) as live:
        yield engine, live


def body(images: list[bytes], **extra) -> dict:
    content = [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in images]
    content.append({"type": "text", "text": QUESTION})
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0,
            **extra}


def post(live, request: dict) -> dict:
    response = httpx.post(live.url + "/v1/chat/completions", json=request, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def stream(live, request: dict) -> list[dict]:
    with httpx.stream("POST", live.url + "/v1/chat/completions", json={**request, "stream": True},
                      timeout=60) as r:
        assert r.status_code == 200
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def prompt_for(engine, n_images: int) -> str:
    """The prompt the server renders: a user turn's images first, as `<image>\\n` each."""
    return engine.build_prompt([("user", "<image>\n" * n_images + QUESTION)])


def test_usage_counts_the_image_positions_and_their_encode_time(flat):
    engine, live = flat
    images = [png_bytes((40, 30)), png_bytes((20, 50), (10, 200, 10))]
    usage = post(live, body(images))["usage"]
    assert usage["prompt_tokens"] == len(engine.encode(prompt_for(engine, 2)))
    image_tokens = 2 * engine.config.num_image_tokens
    assert usage["prompt_tokens_details"] == {"image_tokens": image_tokens,
                                              "text_tokens": usage["prompt_tokens"] - image_tokens}
    assert usage["image_encode_ms"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    text_only = post(live, body([]))["usage"]
    assert text_only["prompt_tokens"] == len(engine.encode(prompt_for(engine, 0)))
    assert text_only["prompt_tokens_details"] == {"image_tokens": 0, "text_tokens": text_only["prompt_tokens"]}
    assert text_only["image_encode_ms"] == 0


def test_the_final_streamed_chunk_carries_the_same_usage(flat):
    engine, live = flat
    request = body([png_bytes()])
    expected = post(live, request)["usage"]
    chunks = stream(live, {**request, "stream_options": {"include_usage": True}})
    assert all("usage" not in c for c in chunks[:-1])
    final = chunks[-1]
    assert final["choices"] == [] and final["usage"]["image_encode_ms"] > 0
    timeless = {k: v for k, v in final["usage"].items() if k != "image_encode_ms"}
    assert timeless == {k: v for k, v in expected.items() if k != "image_encode_ms"}
    assert all("usage" not in c for c in stream(live, request))  # only when asked for


def test_the_openai_client_reads_the_image_cost(flat):
    openai = pytest.importorskip("openai")
    _, live = flat
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    done = client.chat.completions.create(model="tiny-llava", **body([png_bytes()]))
    details = done.usage.prompt_tokens_details
    assert details.image_tokens == 16 and details.text_tokens == done.usage.prompt_tokens - 16
    assert done.usage.model_extra["image_encode_ms"] > 0  # our extension


def test_anyres_image_tokens_grow_with_the_image_size(anyres):
    engine, live = anyres
    sizes = [(20, 20), (300, 100), (200, 200)]  # grids 2x1, 3x1 and 2x2 of 28-px tiles
    counts, encode_ms = [], []
    for size in sizes:
        image = png_bytes(size)
        done = post(live, body([image]))
        usage = done["usage"]
        prompt = prompt_for(engine, 1)
        assert usage["prompt_tokens"] == len(engine.encode(prompt, [size]))
        assert usage["prompt_tokens_details"]["image_tokens"] == engine.image_token_counts([size])[0]
        counts.append(usage["prompt_tokens_details"]["image_tokens"])
        encode_ms.append(usage["image_encode_ms"])
        expected = engine.generate([Request(prompt, [image], SamplingParams(max_new_tokens=8))])[0]
        assert done["choices"][0]["message"]["content"] == expected
    assert counts == sorted(counts) and counts[0] < counts[-1]
    assert counts[0] > engine.config.num_image_tokens  # the global view plus the tiles
    assert all(ms > 0 for ms in encode_ms)


def test_anyres_streams_with_usage(anyres):
    engine, live = anyres
    request = body([png_bytes((300, 100))], stream_options={"include_usage": True})
    chunks = stream(live, request)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    prompt = prompt_for(engine, 1)
    expected = engine.generate([Request(prompt, [png_bytes((300, 100))], SamplingParams(max_new_tokens=8))])
    assert text.strip() == expected[0]
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens_details"]["image_tokens"] == engine.image_token_counts([(300, 100)])[0]
    assert usage["prompt_tokens"] == len(engine.encode(prompt, [(300, 100)]))
