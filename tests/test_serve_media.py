"""image_url resolution: data URLs, the media directory, and remote URLs with size and time limits."""

from __future__ import annotations

import http.server
import threading

import pytest
from test_serve_support import data_url, png_bytes

from llava15.serve.media import fetch_image
from llava15.serve.schemas import APIError
from llava15.serve.settings import ServeSettings


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if self.path == "/slow.png":  # answers only once the test has seen the client give up
            self.server.release.wait(30)
        body = png_bytes((300, 200)) if self.path == "/big.png" else png_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        return  # keep test output clean


class QuietServer(http.server.ThreadingHTTPServer):
    release: threading.Event  # set by a test: /slow.png may answer now

    def handle_error(self, request, client_address) -> None:
        return  # the client hung up on purpose (size and time limits): nothing to report


@pytest.fixture(scope="module")
def http_url():
    server = QuietServer(("127.0.0.1", 0), Handler)
    server.release = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.release
    server.release.set()  # no handler is left waiting
    server.shutdown()
    server.server_close()


def error_of(url: str, settings: ServeSettings) -> APIError:
    with pytest.raises(APIError) as error:
        fetch_image(url, settings)
    return error.value


def status_of(url: str, settings: ServeSettings) -> int:
    return error_of(url, settings).status


def test_data_url():
    assert fetch_image(data_url(png_bytes((40, 30))), ServeSettings()).size == (40, 30)
    assert status_of("data:image/png,abc", ServeSettings()) == 400  # not base64
    assert status_of("ftp://example.org/x.png", ServeSettings()) == 400


def test_remote_urls_only_when_allowed_and_within_limits(http_url):
    url, release = http_url
    assert status_of(url + "/ok.png", ServeSettings()) == 400
    allowed = ServeSettings(allow_remote_images=True, remote_image_timeout_s=0.5)
    assert fetch_image(url + "/ok.png", allowed).size == (40, 30)
    small = ServeSettings(allow_remote_images=True, max_image_bytes=len(png_bytes()) + 10)
    assert status_of(url + "/big.png", small) == 413
    # /slow.png answers only after `release`, set below once the fetch has returned: its 400
    # can only come from the client's own time limit
    try:
        slow = error_of(url + "/slow.png", allowed)
    finally:
        release.set()
    assert slow.status == 400 and "timed out" in slow.message, slow.message
    assert status_of("http://127.0.0.1:9/x.png", allowed) == 400  # connection refused


def test_media_dir_confines_local_paths(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.png").write_bytes(png_bytes())
    (tmp_path / "secret.png").write_bytes(png_bytes())
    (media / "link.png").symlink_to(tmp_path / "secret.png")
    settings = ServeSettings(media_dir=media)
    assert fetch_image("a.png", settings).size == (40, 30)
    assert fetch_image(f"file://{media}/a.png", settings).size == (40, 30)
    for outside in ("../secret.png", str(tmp_path / "secret.png"), "link.png", "missing.png", "."):
        assert status_of(outside, settings) == 400, outside
    assert status_of("a.png", ServeSettings()) == 400  # no media dir: no local paths at all
