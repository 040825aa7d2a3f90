"""`llava15 serve`: its flags and safe defaults (loopback only, no remote images, no local paths)."""

from __future__ import annotations

from llava15.cli import build_parser


def test_serve_flags_and_defaults(monkeypatch):
    monkeypatch.delenv("LLAVA15_API_KEY", raising=False)
    args = build_parser().parse_args(["serve", "--model", "some/dir"])
    assert (args.host, args.port, args.api_key) == ("127.0.0.1", 8000, None)
    assert args.media_dir is None and not args.allow_remote_images
    args = build_parser().parse_args(["serve", "--model-path", "d", "--port", "9001", "--api-key", "k",
                                      "--media-dir", "/srv/img", "--allow-remote-images",
                                      "--max-batch-size", "4", "--max-queue", "2"])
    assert (args.model, args.port, args.api_key, str(args.media_dir)) == ("d", 9001, "k", "/srv/img")
    assert args.allow_remote_images and (args.max_batch_size, args.max_queue) == (4, 2)


def test_served_answer_equals_the_predict_command(tmp_path):
    """A saved checkpoint: `llava15 predict` and `llava15 serve` (both real subprocesses) give the
    same greedy answer to the same question and image."""
    import json
    import os
    import subprocess
    import sys
    import time

    import httpx
    from test_serve_support import GOLDEN, data_url, png_bytes, tiny_engine

    from llava15.checkpoint import save_llava_hf
    from llava15.data.image import ImageProcessorConfig

    engine = tiny_engine()
    save_llava_hf(engine.model, engine.model.config, GOLDEN / "tokenizer",
                  ImageProcessorConfig(shortest_edge=28, crop_size=(28, 28)), tmp_path / "ckpt")
    image = png_bytes((50, 40), (90, 20, 160))
    (tmp_path / "img.png").write_bytes(image)
    question = "What is the colour of the rectangle?"
    (tmp_path / "q.jsonl").write_text(json.dumps({"question_id": 7, "image": "img.png", "text": question}))
    env = {**os.environ, "PYTHONPATH": str(GOLDEN.parents[1])}
    cli = [sys.executable, "-m", "llava15"]
    subprocess.run(cli + ["predict", "--model", str(tmp_path / "ckpt"), "--question-file",
                          str(tmp_path / "q.jsonl"), "--image-folder", str(tmp_path), "--answers-file",
                          str(tmp_path / "a.jsonl"), "--temperature", "0", "--max_new_tokens", "20"],
                   check=True, env=env, capture_output=True, timeout=120)
    expected = json.loads((tmp_path / "a.jsonl").read_text())["text"]

    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(cli + ["serve", "--model", str(tmp_path / "ckpt"), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/health").raise_for_status()
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        content = [{"type": "image_url", "image_url": {"url": data_url(image)}},
                   {"type": "text", "text": question}]
        r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 20})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == expected
    finally:
        server.terminate()
        server.wait(30)
