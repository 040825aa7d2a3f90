"""The OpenAI-compatible server: `create_app(engine, settings)` builds a FastAPI app.

Routes: `POST /v1/chat/completions` (JSON or SSE), `GET /v1/models`, `GET /health`, and the
chat page at `/`. One `Scheduler` (started and stopped with the app's lifespan) owns the model.
With `settings.api_key`, `/v1/*` needs `Authorization: Bearer KEY` (401 otherwise). Every error
is an OpenAI-style body `{"error": {"message", "type", "param", "code"}}`; unexpected
exceptions are logged and answered 500 with a generic message, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llava15.infer.engine import Engine
from llava15.serve import chat
from llava15.serve.pump import EventPump
from llava15.serve.scheduler import Scheduler
from llava15.serve.schemas import APIError, ChatCompletionRequest
from llava15.serve.settings import ServeSettings

log = logging.getLogger(__name__)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 before any handler runs.

    It reads the body itself (Content-Length is checked first; chunked bodies are counted), then
    replays it to the app; later `receive` calls pass through, so disconnects are still seen.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_bytes
        body = bytearray()
        while not too_large:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(b"", message, receive), send)  # let the app see it
                return
            body += message.get("body", b"")
            too_large = len(body) > self.max_bytes
            if not message.get("more_body", False):
                break
        if too_large:
            error = APIError(413, f"request body larger than {self.max_bytes} bytes")
            await JSONResponse(error.body(), status_code=413)(scope, receive, send)
            return
        await self.app(scope, _replay(bytes(body), None, receive), send)


def _replay(body: bytes, pending: Message | None, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return pending or {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replayed


def create_app(engine: Engine, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    tok = engine.tokenizer
    scheduler = Scheduler(engine.model, [tok.eos_token_id], tok.pad_token_id or 0,
                          settings.max_batch_size, settings.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pump = EventPump(asyncio.get_running_loop())
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()

    app = FastAPI(title="llava15", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.scheduler, app.state.settings = engine, scheduler, settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    add_error_handlers(app)

    def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(),
                                                                    settings.api_key.encode()):
            raise APIError(401, "missing or invalid API key (send Authorization: Bearer KEY)",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)])
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        prepared = await chat.prepare(engine, scheduler, request.app.state.pump, settings, body)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return chat.stream(engine, scheduler, prepared, engine.model_id, include_usage)
        return await chat.complete(engine, scheduler, prepared, request, engine.model_id)

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models() -> dict:
        return {"object": "list", "data": [{"id": engine.model_id, "object": "model",
                                            "created": int(time.time()), "owned_by": "llava15"}]}

    @app.get("/health")
    async def health() -> dict:
        stats = scheduler.stats()
        return {"status": "ok", "model": engine.model_id, "running": stats.running,
                "queued": stats.queued, "max_batch_size": stats.max_batch_size,
                "max_queue": stats.max_queue, "auth": settings.api_key is not None,
                "context_length": engine.config.text.max_position_embeddings,
                "limits": {"max_tokens": settings.max_tokens_limit, "max_images": settings.max_images,
                           "max_image_pixels": settings.max_image_pixels,
                           "max_body_bytes": settings.max_body_bytes},
                "defaults": {"temperature": settings.default_temperature, "top_p": 1.0,
                             "max_tokens": settings.default_max_tokens}}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        html = resources.files("llava15.serve").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(html.replace("{{MODEL_ID}}", json.dumps(engine.model_id)[1:-1]))

    return app


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(p.get("type") == "json_invalid" or tuple(p.get("loc", ())) == ("body",)
               for p in problems):
            return await api_error(request, APIError(
                400, "the request body is not valid JSON or not a JSON object (send "
                     "Content-Type: application/json)"))
        first = problems[0] if problems else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        message = "; ".join(f"{'.'.join(str(x) for x in p.get('loc', ()) if x != 'body')}: "
                            f"{p.get('msg')}" for p in problems[:5])
        return await api_error(request, APIError(422, message, param=where or None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return await api_error(request, APIError(error.status_code, str(error.detail)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return await api_error(request, APIError(500, "internal server error"))
