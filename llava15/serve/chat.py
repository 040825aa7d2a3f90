"""`POST /v1/chat/completions`: OpenAI messages -> a scheduler job -> a JSON answer or SSE chunks.

Messages are rendered with the engine's conversation template as `predict` and the official
CLI render them: the images of a user turn go first, as `<image>\\n` each, then its text parts
joined by newlines. Images and prompt ids are prepared off the event loop; decoding happens on
the scheduler thread, whose events come back through an `asyncio.Queue`.

`usage` follows OpenAI's shape: `prompt_tokens` counts every prompt position, each image's
included (576 for LLaVA-1.5, more for AnyRes as the grid grows), split in OpenAI's
`prompt_tokens_details` into `image_tokens` and `text_tokens`; `image_encode_ms`, our extension,
is the request's share of the time its prefill spent in the vision tower, projector and merge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from llava15.data.conversation import render_prompt
from llava15.infer.engine import Engine
from llava15.infer.textstream import StopStrings, TextDeltas
from llava15.infer.generate import SamplingParams
from llava15.serve.media import fetch_image
from llava15.serve.pump import EventPump
from llava15.serve.scheduler import Event, Job, QueueFull, Scheduler
from llava15.serve.schemas import APIError, ChatCompletionRequest, ImagePart, Message
from llava15.serve.settings import ServeSettings

IMAGE_TOKEN = "<image>"
POLL_S = 0.5  # how often a waiting handler checks that its client is still there


@dataclass
class PromptInputs:
    """A request's model inputs: expanded prompt ids, its images' pixel values and (width,
    height) sizes, and the prompt positions the images take."""

    ids: list[int]
    pixel_values: object
    image_sizes: list[tuple[int, int]]
    image_tokens: int


@dataclass
class Prepared:
    prompt_ids: list[int]
    job: Job
    events: asyncio.Queue
    image_tokens: int = 0


def render_messages(engine: Engine, messages: list[Message]) -> tuple[str, list[str]]:
    """OpenAI messages -> (the template's prompt, image URLs in prompt order).

    Leading system (or developer) messages replace the template's system prompt; without one
    the prompt is exactly the engine's (as `predict` and the CLI render it).
    """
    turns: list[tuple[str, str | None]] = []
    system: list[str] = []
    urls: list[str] = []
    for i, message in enumerate(messages):
        parts = message.content if isinstance(message.content, list) else [message.content or ""]
        texts = [p if isinstance(p, str) else p.text for p in parts if not isinstance(p, ImagePart)]
        images = [p.image_url.url for p in parts if isinstance(p, ImagePart)]
        text = "\n".join(texts)
        if IMAGE_TOKEN in text:
            raise APIError(400, f"messages[{i}]: the text may not contain {IMAGE_TOKEN}; send "
                                "images as image_url content parts", param="messages")
        role = "system" if message.role == "developer" else message.role
        if images and role != "user":
            raise APIError(400, f"messages[{i}]: only user messages may hold images", param="messages")
        if role == "system":
            if turns:
                raise APIError(400, f"messages[{i}]: system messages must come first", param="messages")
            system.append(text)
            continue
        turns.append((role, f"{IMAGE_TOKEN}\n" * len(images) + text))
        urls += images
    if not turns or turns[-1][0] == "assistant":
        raise APIError(400, "the last message must be a user message", param="messages")
    turns.append(("assistant", None))
    template = engine.template
    if system:
        template = dataclasses.replace(template, system="\n".join(system))
    try:
        return render_prompt(template, turns), urls
    except ValueError as e:  # e.g. roles that do not alternate user/assistant
        raise APIError(400, f"messages: {e}", param="messages") from e


def sampling_params(body: ChatCompletionRequest, settings: ServeSettings) -> SamplingParams:
    max_tokens = (body.max_completion_tokens or body.max_tokens
                  or min(settings.default_max_tokens, settings.max_tokens_limit))
    if max_tokens > settings.max_tokens_limit:
        raise APIError(422, f"max_tokens is {max_tokens}, this server allows at most "
                            f"{settings.max_tokens_limit}", param="max_tokens")
    temperature = settings.default_temperature if body.temperature is None else body.temperature
    return SamplingParams(max_new_tokens=max_tokens, temperature=temperature,
                          top_p=body.top_p or 1.0, top_k=body.top_k or 0,
                          stop=body.stop_strings(), seed=body.seed)


def prepare_inputs(engine: Engine, settings: ServeSettings, prompt: str, urls: list[str]) -> PromptInputs:
    """Blocking: prompt ids and pixel values. The prompt length is checked before the images
    load where it does not depend on them; an AnyRes image's positions depend on its size, so
    there the images load first."""
    limit = engine.config.text.max_position_embeddings
    max_prompt = min(settings.max_prompt_tokens or limit - 1, limit - 1)
    anyres = engine.config.image_aspect_ratio == "anyres"
    images = [fetch_image(url, settings) for url in urls] if anyres else []
    ids = engine.encode(prompt, [image.size for image in images])
    if len(ids) > max_prompt:
        raise APIError(400, f"the prompt has {len(ids)} tokens (images included), this server "
                            f"allows at most {max_prompt}", param="messages",
                       code="context_length_exceeded")
    if not anyres:
        images = [fetch_image(url, settings) for url in urls]
    sizes = [image.size for image in images]
    return PromptInputs(ids, engine.pixel_values(images) if images else None, sizes,
                        sum(engine.image_token_counts(sizes)))


async def prepare(engine: Engine, scheduler: Scheduler, pump: EventPump, settings: ServeSettings,
                  body: ChatCompletionRequest) -> Prepared:
    """Validate, load the images, and submit the job (503 when the queue is full)."""
    params = sampling_params(body, settings)
    prompt, urls = render_messages(engine, body.messages)
    if len(urls) > settings.max_images:
        raise APIError(400, f"{len(urls)} images in one request, this server allows at most "
                            f"{settings.max_images}", param="messages")
    inputs = await run_in_threadpool(prepare_inputs, engine, settings, prompt, urls)
    ids = inputs.ids
    events: asyncio.Queue[Event] = asyncio.Queue()
    stop_check = None
    if params.stop:
        checker = StopStrings(engine.tokenizer, [params.stop])
        stop_check = lambda tokens: checker(0, tokens)  # noqa: E731
    budget = min(params.max_new_tokens, engine.config.text.max_position_embeddings - len(ids))
    job = Job(ids, inputs.pixel_values, params, budget, sink=pump.sink(events), stop_check=stop_check,
              image_sizes=inputs.image_sizes)
    try:
        scheduler.submit(job)
    except QueueFull as e:
        raise APIError(503, f"the server is busy ({e}); retry in {settings.retry_after_s} s",
                       headers={"Retry-After": str(settings.retry_after_s)}) from e
    return Prepared(ids, job, events, inputs.image_tokens)


def failure(event: Event) -> APIError:
    if event.finish == "cancelled":
        return APIError(503, "the server is shutting down; retry later")
    return APIError(500, f"generation failed: {event.error}")


def usage(prepared: Prepared) -> dict:
    """OpenAI's usage numbers with the image cost (module docstring)."""
    prompt, completion = len(prepared.prompt_ids), len(prepared.job.tokens)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"image_tokens": prepared.image_tokens,
                                      "text_tokens": prompt - prepared.image_tokens},
            "image_encode_ms": round(1000 * prepared.job.image_encode_s, 3)}


async def complete(engine: Engine, scheduler: Scheduler, prepared: Prepared, request: Request,
                   model_id: str) -> JSONResponse:
    """Wait for the whole answer; a client that disconnects cancels its job within POLL_S."""
    try:
        while True:
            try:
                event = await asyncio.wait_for(prepared.events.get(), POLL_S)
            except TimeoutError:
                if await request.is_disconnected():
                    scheduler.cancel(prepared.job)
                    return JSONResponse({}, status_code=499)
                continue
            if event.finish is not None:
                break
    finally:
        scheduler.cancel(prepared.job)  # harmless when finished; frees the slot otherwise
    if event.finish not in ("stop", "length"):
        raise failure(event)
    # As `Engine.generate` decodes an answer: special tokens skipped, stop string cut, stripped.
    text = StopStrings.trim(engine.tokenizer.decode(prepared.job.tokens), prepared.job.params.stop)
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
        "created": int(time.time()), "model": model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text.strip()},
                     "finish_reason": event.finish, "logprobs": None}],
        "usage": usage(prepared),
    })


def stream(engine: Engine, scheduler: Scheduler, prepared: Prepared, model_id: str,
           include_usage: bool) -> StreamingResponse:
    """Server-sent events in the OpenAI chunk format, ending with `data: [DONE]`.

    While no token arrives, a comment line goes out every POLL_S: writing to a closed
    connection ends this generator, and its `finally` cancels the job.
    """
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                "model": model_id, "choices": [{"index": 0, "delta": delta,
                                                "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        deltas = TextDeltas(engine.tokenizer, prepared.job.params.stop)
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                try:
                    events = [await asyncio.wait_for(prepared.events.get(), POLL_S)]
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                while not prepared.events.empty():  # a slow reader: send what piled up at once
                    events.append(prepared.events.get_nowait())
                text = "".join(deltas.push(e.token) for e in events if e.token is not None)
                end = next((e for e in events if e.finish is not None), None)
                if end is not None and end.finish in ("stop", "length"):
                    text += deltas.finish()
                if text:
                    yield chunk({"content": text})
                if end is None:
                    continue
                if end.finish in ("stop", "length"):
                    yield chunk({}, end.finish)
                    if include_usage:
                        body = {"id": chunk_id, "object": "chat.completion.chunk", "created": created,
                                "model": model_id, "choices": [], "usage": usage(prepared)}
                        yield f"data: {json.dumps(body)}\n\n"
                else:
                    yield f"data: {json.dumps(failure(end).body())}\n\n"
                yield "data: [DONE]\n\n"
                return
        finally:
            scheduler.cancel(prepared.job)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
