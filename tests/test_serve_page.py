"""The chat page at `/`, driven in headless Chromium: upload, paste, streamed answer, reset.

Needs Debian's `chromium` at /usr/bin/chromium and the `playwright` Python package (both installed
by scripts/install.sh); skipped with the reason otherwise. Saves a screenshot under tmp_path.
"""

from __future__ import annotations

import base64
import os

import pytest
from test_serve_support import LiveServer, png_bytes, tiny_engine

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or scripts/install.sh)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is missing (pip install playwright)")


@pytest.fixture(scope="module")
def engine():
    return tiny_engine()


@pytest.fixture(scope="module")
def server(engine):
    from llava15.serve.app import create_app

    with LiveServer(create_app(engine)) as live:
        yield live


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(server.url + "/")
        yield page
        browser.close()


def greedy(engine, question: str, image: bytes, max_tokens: int) -> str:
    from llava15.infer.engine import Request
    from llava15.infer.generate import SamplingParams

    prompt = engine.build_prompt([("user", "<image>\n" + question)])
    return engine.generate([Request(prompt, [image], SamplingParams(max_new_tokens=max_tokens))])[0]


def ask(page, question: str, max_tokens: int) -> str:
    """Send a question; return the finished answer after checking it arrived in pieces."""
    page.fill("#temperature", "0")
    page.fill("#max_tokens", str(max_tokens))
    page.evaluate("""() => {  // count text updates of the log while the answer streams in
        window.updates = 0;
        window.observer = window.observer || new MutationObserver(() => window.updates++);
        window.observer.observe(document.getElementById("log"),
                                {subtree: true, childList: true, characterData: true});
    }""")
    page.fill("#input", question)
    page.click("#send")
    page.wait_for_selector(".msg.assistant[data-state=done]:last-child", timeout=60_000)
    assert page.evaluate("window.updates") >= 2, "the answer did not arrive in pieces"
    return page.locator(".msg.assistant").last.inner_text().strip()


def test_upload_question_streamed_answer_and_screenshot(page, engine, tmp_path):
    assert page.locator("#model").inner_text() == "tiny-llava"
    image = png_bytes((64, 48), (30, 120, 200))
    (tmp_path / "picture.png").write_bytes(image)
    page.set_input_files("#file", str(tmp_path / "picture.png"))
    page.wait_for_selector("#preview img")
    answer = ask(page, "What is in the picture?", 40)
    assert answer == greedy(engine, "What is in the picture?", image, 40)
    assert page.locator(".msg.user img").count() == 1
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
    assert (tmp_path / "chat.png").stat().st_size > 5_000
    print(f"screenshot: {tmp_path / 'chat.png'}")


def test_reset_then_pasted_image(page, engine):
    page.click("#reset")
    assert page.locator(".msg").count() == 0
    image = png_bytes((40, 40), (250, 250, 0))
    page.evaluate("""(b64) => {  // what a browser does when an image is pasted
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "pasted.png", {type: "image/png"}));
        document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data}));
    }""", base64.b64encode(image).decode())
    page.wait_for_selector("#preview img")
    answer = ask(page, "Describe it.", 16)
    assert answer == greedy(engine, "Describe it.", image, 16)
    assert page.locator(".msg.error").count() == 0
