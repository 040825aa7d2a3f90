"""Load test of `llava15 serve`'s batching: concurrent clients against one client in sequence.

The demo model does not exist yet, so the server runs a random model of a realistic small size,
built here: LLaMA 4 layers x 256 (GQA 8/4 heads, MLP 688, context 2048, vocab 512 to match the
tiny SentencePiece tokenizer of tests/golden/tokenizer) and CLIP 2 layers x 128 at 56 px
(patch 14: 16 image tokens), mlp2x_gelu projector. Decoding is greedy, so both phases produce
the same tokens; counts come from each response's `usage` (a row may end early on EOS).

The server is a subprocess bound to 127.0.0.1 on a free port (so the clients and the server do
not share one interpreter's GIL). Phase 1: one client sends the request list one after another.
Phase 2: `--clients` clients send the same list concurrently, each its share, mixing streaming
and non-streaming requests, half of them with an image. Checked: no 5xx, no dropped response
(every JSON answer has its usage; every stream ends with [DONE]). Reported: tokens/s of both
phases and their ratio, and p50/p99 request latency.

    .venv/bin/python bench/serve_load.py [--clients 32] [--requests 128] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import io
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_engine():
    import torch

    from llava15.config import LlavaConfig, TextConfig, VisionConfig
    from llava15.data.image import ImageProcessorConfig
    from llava15.data.tokenizer import load_tokenizer
    from llava15.infer.engine import Engine
    from llava15.model.llava import Llava

    vision = VisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                          num_attention_heads=4, image_size=56, patch_size=14)
    text = TextConfig(vocab_size=512, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048)
    config = dataclasses.replace(LlavaConfig(), vision=vision, text=text, mm_vision_select_layer=-2)
    torch.manual_seed(0)
    model = Llava(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(0.05 * torch.randn_like(p))
    return Engine(model, load_tokenizer(ROOT / "tests/golden/tokenizer"),
                  ImageProcessorConfig(shortest_edge=56, crop_size=(56, 56)), "vicuna_v1",
                  "bench-llava-4x256")


def serve(port: int, threads: int) -> None:
    import torch
    import uvicorn

    from llava15.serve.app import create_app
    from llava15.serve.settings import ServeSettings

    torch.set_num_threads(threads)
    app = create_app(build_engine(), ServeSettings(max_batch_size=32, max_queue=256))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_url(seed: int) -> str:
    from PIL import Image

    image = Image.new("RGB", (80, 60), (seed * 37 % 256, seed * 91 % 256, 120))
    image.paste((255, 255, 255), (10 + seed % 30, 10, 40 + seed % 30, 40))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def make_requests(n: int, max_tokens: int) -> list[dict]:
    questions = ["What is in the picture?", "Describe the image in detail.", "What colour is it?",
                 "Count the shapes.", "Tell me a short story about a square."]
    requests = []
    for i in range(n):
        text = questions[i % len(questions)] + f" (request {i})"
        content = ([{"type": "image_url", "image_url": {"url": image_url(i)}},
                    {"type": "text", "text": text}] if i % 2 == 0 else text)
        requests.append({"messages": [{"role": "user", "content": content}], "temperature": 0,
                         "max_tokens": max_tokens - 8 * (i % 3), "stream": i % 4 in (1, 2),
                         "stream_options": {"include_usage": True}})
    return requests


@dataclasses.dataclass
class Result:
    status: int
    tokens: int
    latency: float
    complete: bool


async def send(client, url: str, body: dict) -> Result:
    start = time.perf_counter()
    if not body["stream"]:
        r = await client.post(url, json=body)
        ok = r.status_code == 200 and "usage" in r.json()
        tokens = r.json()["usage"]["completion_tokens"] if ok else 0
        return Result(r.status_code, tokens, time.perf_counter() - start, ok)
    tokens, done = 0, False
    async with client.stream("POST", url, json=body) as r:
        async for line in r.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: ") and '"usage"' in line:
                usage = json.loads(line[6:]).get("usage")
                tokens = usage["completion_tokens"] if usage else tokens
        return Result(r.status_code, tokens, time.perf_counter() - start, done and r.status_code == 200)


async def run_clients(url: str, requests: list[dict], clients: int, timeout: float) -> tuple[list[Result], float]:
    import httpx

    shares = [requests[i::clients] for i in range(clients)]
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        async def one_client(share: list[dict]) -> list[Result]:
            return [await send(client, url, body) for body in share]
        start = time.perf_counter()
        results = await asyncio.wait_for(asyncio.gather(*(one_client(s) for s in shares)), timeout)
        return [r for rs in results for r in rs], time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process: this one, or `pid` from /proc."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(name: str, url: str, requests: list[dict], clients: int, timeout: float,
          server_pid: int) -> float:
    before = cpu_seconds(server_pid), cpu_seconds()
    results, wall = asyncio.run(run_clients(url, requests, clients, timeout))
    server_cpu, client_cpu = cpu_seconds(server_pid) - before[0], cpu_seconds() - before[1]
    speed = summarize(name, results, wall)
    print(f"    CPU seconds: server {server_cpu:.1f}, clients {client_cpu:.1f} (wall {wall:.1f})")
    return speed


def summarize(name: str, results: list[Result], wall: float) -> float:
    tokens = sum(r.tokens for r in results)
    latencies = [r.latency for r in results]
    bad = [r for r in results if r.status >= 500 or not r.complete]
    print(f"{name}: {len(results)} requests, {tokens} tokens in {wall:.1f} s = {tokens / wall:.1f} "
          f"tokens/s; latency p50 {percentile(latencies, 50):.2f} s, p99 {percentile(latencies, 99):.2f} s; "
          f"5xx or incomplete: {len(bad)}")
    if bad:
        raise SystemExit(f"{name}: {len(bad)} failed or dropped responses (statuses "
                         f"{sorted({r.status for r in bad})})")
    return tokens / wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=128, help="requests in each phase")
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    p.add_argument("--timeout", type=float, default=300.0, help="limit for each phase, seconds")
    p.add_argument("--serve-port", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_port is not None:
        serve(args.serve_port, args.threads)
        return 0

    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve-port", str(port),
                               "--threads", str(args.threads)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        url = base + "/v1/chat/completions"
        requests = make_requests(args.requests, args.max_tokens)
        asyncio.run(run_clients(url, requests[:2], 1, args.timeout))  # warm-up
        sequential = phase("1 client, one after another", url, requests, 1, args.timeout, server.pid)
        concurrent = phase(f"{args.clients} concurrent clients", url, requests, args.clients,
                           args.timeout, server.pid)
        ratio = concurrent / sequential
        print(f"aggregate speed-up: {ratio:.2f}x (goal: at least 3x)")
        return 0 if ratio >= 3 else 1
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
