"""The chat page at `/`, driven in headless Chromium: upload, paste, streamed answer, reset.

"Streamed" is checked without timing: the model's decoding step is held halfway through the
answer until the page shows the part that is out, and every text the assistant's message takes
is recorded; at least two of them must come before the answer is done.

Needs Debian's `chromium` at /usr/bin/chromium and the `playwright` Python package (both installed
by scripts/install.sh); skipped with the reason otherwise. Saves a screenshot under tmp_path.
"""

from __future__ import annotations

import base64
import os

import pytest
from decode_gate import DecodeGate
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
def gate(engine):
    return DecodeGate(engine.model)


@pytest.fixture(scope="module")
def server(engine, gate):
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


RECORD = """() => {  // every text the new assistant message takes, until it leaves "streaming"
    window.texts = [];
    window.answered = false;
    if (window.observer) window.observer.disconnect();
    window.observer = new MutationObserver((records) => {
        for (const r of records) {
            const node = r.target.nodeType === Node.TEXT_NODE ? r.target.parentElement : r.target;
            if (window.answered || !node || !node.closest(".msg.assistant")) continue;
            if (r.type === "attributes") {  // data-state: streaming -> done (or failed)
                window.answered = r.oldValue === "streaming";
            } else if (r.type === "characterData") {
                window.texts.push(r.target.data);
            } else {  // the message's text replaced: its new text node
                for (const added of r.addedNodes)
                    if (added.nodeType === Node.TEXT_NODE) window.texts.push(added.data);
            }
        }
    });
    window.observer.observe(document.getElementById("log"), {subtree: true, childList: true,
        characterData: true, attributes: true, attributeFilter: ["data-state"], attributeOldValue: true});
}"""
SHOWN_WHILE_STREAMING = """() => {
    const messages = document.querySelectorAll(".msg.assistant");
    const last = messages[messages.length - 1];
    return last !== undefined && last.dataset.state === "streaming" && last.textContent.length > 0;
}"""


def ask(page, gate, question: str, max_tokens: int) -> str:
    """Send a question; return the finished answer after checking it arrived in pieces: the
    decoding step that would produce token max_tokens // 2 + 1 is held until the page shows the
    answer so far, so the page cannot receive the answer in one piece."""
    page.fill("#temperature", "0")
    page.fill("#max_tokens", str(max_tokens))
    page.evaluate(RECORD)
    gate.hold_at(max_tokens // 2)
    try:
        page.fill("#input", question)
        page.click("#send")
        gate.wait_held()
        page.wait_for_function(SHOWN_WHILE_STREAMING, timeout=30_000)
    finally:
        gate.open()
    page.wait_for_selector(".msg.assistant[data-state=done]:last-child", timeout=60_000)
    texts = page.evaluate("window.texts")
    final = page.locator(".msg.assistant span").last.text_content()
    pieces = [t for t in dict.fromkeys(texts) if t]  # distinct non-empty texts, in order
    assert page.evaluate("window.answered") and len(pieces) >= 2, f"not streamed in pieces: {texts}"
    assert pieces[-1] == final and all(b.startswith(a) for a, b in zip(pieces, pieces[1:])), texts
    return page.locator(".msg.assistant").last.inner_text().strip()


def test_upload_question_streamed_answer_and_screenshot(page, engine, gate, tmp_path):
    assert page.locator("#model").inner_text() == "tiny-llava"
    image = png_bytes((64, 48), (30, 120, 200))
    (tmp_path / "picture.png").write_bytes(image)
    page.set_input_files("#file", str(tmp_path / "picture.png"))
    page.wait_for_selector("#preview img")
    answer = ask(page, gate, "What is in the picture?", 40)
    assert answer == greedy(engine, "What is in the picture?", image, 40)
    assert page.locator(".msg.user img").count() == 1
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
    assert (tmp_path / "chat.png").stat().st_size > 5_000
    print(f"screenshot: {tmp_path / 'chat.png'}")


def test_reset_then_pasted_image(page, engine, gate):
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
    answer = ask(page, gate, "Describe it.", 16)
    assert answer == greedy(engine, "Describe it.", image, 16)
    assert page.locator(".msg.error").count() == 0
