"""Ask llama.cpp (through `llama-cpp-python`) and our engine the same image questions with the
same official prompt, greedily: shared by `test_gguf_llamacpp.py` and `bench/gguf_speed.py`.

llama-cpp-python's `Llava15ChatHandler` renders its own prompt ("\\nUSER: ...\\nASSISTANT: ");
`OfficialPromptHandler` renders the conversation template's instead, with the image where the
official `<image>\\n` goes, so both sides tokenize the same text.
"""

from __future__ import annotations

import base64
import ctypes
import io
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image


@dataclass(frozen=True)
class Answer:
    text: str
    tokens: int
    first_token_s: float  # from the request to the first generated token
    total_s: float


def official_handler(system: str, sep: str = " "):
    """A Llava15ChatHandler subclass whose template is the two-separator LLaVA-1.5 prompt:
    "SYSTEM USER: <image>\\nQUESTION ASSISTANT:"."""
    from llama_cpp.llama_chat_format import Llava15ChatHandler

    class OfficialPromptHandler(Llava15ChatHandler):
        DEFAULT_SYSTEM_MESSAGE = system
        # (the handler renders with trim_blocks: newlines are written as expressions)
        CHAT_FORMAT = (
            "{% for message in messages %}"
            "{% if message.role == 'system' %}{{ message.content }}{% endif %}"
            "{% if message.role == 'user' %}"
            "{{ '" + sep + "' }}USER: "
            "{% for content in message.content %}{% if content.type == 'image_url' %}"
            "{{ content.image_url.url }}{{ '\\n' }}{% endif %}{% endfor %}"
            "{% for content in message.content %}{% if content.type == 'text' %}"
            "{{ content.text }}{% endif %}{% endfor %}"
            "{% endif %}"
            "{% endfor %}"
            "{{ '" + sep + "' }}ASSISTANT:")

    return OfficialPromptHandler


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def open_llamacpp(llm: Path, mmproj: Path, system: str, n_ctx: int = 512, threads: int = 1):
    from llama_cpp import Llama

    handler = official_handler(system)(clip_model_path=str(mmproj), verbose=False)
    return Llama(model_path=str(llm), chat_handler=handler, n_ctx=n_ctx, n_threads=threads,
                 n_threads_batch=threads, n_gpu_layers=0, verbose=False, seed=0)


def ask_llamacpp(model, image: Image.Image, question: str, max_tokens: int) -> Answer:
    """Greedy (top_k 1, no repeat penalty) answer of llama.cpp, timed from the request."""
    started = time.perf_counter()
    first = None
    pieces = []
    stream = model.create_chat_completion(
        messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(image)}},
            {"type": "text", "text": question}]}],
        temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, max_tokens=max_tokens,
        stream=True)
    count = 0
    for chunk in stream:
        delta = chunk["choices"][0]["delta"].get("content")
        if delta:
            if first is None:
                first = time.perf_counter() - started
            pieces.append(delta)
            count += 1
    total = time.perf_counter() - started
    return Answer("".join(pieces).strip(), count, first if first is not None else total, total)


def ask_ours(engine, image: Image.Image, question: str, max_tokens: int) -> Answer:
    from llava15.data.conversation import build_question_prompt
    from llava15.infer.engine import Request
    from llava15.infer.generate import SamplingParams

    prompt = build_question_prompt(engine.template, question, with_image=True)
    started = time.perf_counter()
    first = None
    pieces = []
    for piece in engine.stream(Request(prompt, [image], SamplingParams(max_new_tokens=max_tokens))):
        if first is None:
            first = time.perf_counter() - started
        pieces.append(piece)
    total = time.perf_counter() - started
    return Answer("".join(pieces).strip(), len(pieces), first if first is not None else total, total)


def llamacpp_image_features(model, image: Image.Image, width: int):
    """The projected image features llama.cpp's multimodal library computes for `image`
    (numpy, tokens x `width`), through the chat handler's own context."""
    import llama_cpp.mtmd_cpp as mtmd
    import numpy as np

    handler = model.chat_handler
    handler._init_mtmd_context(model)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    bitmap = handler._create_bitmap_from_bytes(buffer.getvalue())
    text = mtmd.mtmd_input_text()
    marker = mtmd.mtmd_default_marker()
    text.text, text.text_len, text.add_special, text.parse_special = marker, len(marker), False, True
    chunks = mtmd.mtmd_input_chunks_init()
    try:
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        if mtmd.mtmd_tokenize(handler.mtmd_ctx, chunks, ctypes.byref(text), bitmaps, 1) != 0:
            raise RuntimeError("mtmd_tokenize failed")
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) != mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                continue
            n = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            if mtmd.mtmd_encode_chunk(handler.mtmd_ctx, chunk) != 0:
                raise RuntimeError("mtmd_encode_chunk failed")
            out = mtmd.mtmd_get_output_embd(handler.mtmd_ctx)
            return np.ctypeslib.as_array(out, shape=(n * width,)).reshape(n, width).copy()
    finally:
        mtmd.mtmd_input_chunks_free(chunks)
        mtmd.mtmd_bitmap_free(bitmap)
    raise RuntimeError("no image chunk")


def image_features(llava, pixel_values, cls_last: bool = False):
    """Our projected features of `pixel_values` (1 image), or with `cls_last` what llama.cpp's
    LLaVA graph computes in the pinned version: the class token appended after the patches
    (positions 0..n in that order) and rows 1..n read out, so each patch gets its neighbour's
    position embedding, patch 0 is dropped and the class token's output is fed to the LLM
    (reported upstream as ggml-org/llama.cpp#25814)."""
    import torch

    tower = llava.vision_tower.vision_model
    select = llava.config.mm_vision_select_layer
    layers = select if select >= 0 else llava.config.vision.num_hidden_layers + 1 + select
    with torch.no_grad():
        patches = tower.embeddings.patch_embedding(pixel_values.float()).flatten(2).transpose(1, 2)
        cls = tower.embeddings.class_embedding.expand(1, 1, -1)
        x = torch.cat([patches, cls] if cls_last else [cls, patches], 1)
        x = tower.pre_layrnorm(x + tower.embeddings.position_embedding.weight)
        for layer in tower.encoder.layers[:layers]:
            x = layer(x)
        return llava.multi_modal_projector(x[:, 1:])[0].numpy()


def llamacpp_pixels(image: Image.Image, size: int, image_mean, image_std):
    """llama.cpp's LLaVA-1.5 preprocessing as measured: the long side resized to `size` keeping
    the aspect ratio (the short side rounded up), PIL-equal bicubic, then centred on a square of
    the mean colour (122, 116, 104), then normalised. The official order is the other way round:
    pad to a square first, then resize (`expand2square`)."""
    import math

    import numpy as np
    import torch

    w, h = image.size
    nw, nh = (size, max(1, math.ceil(h * size / w))) if w >= h else (max(1, math.ceil(w * size / h)), size)
    canvas = Image.new("RGB", (size, size), (122, 116, 104))
    canvas.paste(image.convert("RGB").resize((nw, nh), Image.BICUBIC), ((size - nw) // 2, (size - nh) // 2))
    array = np.asarray(canvas, np.float32) / 255.0
    array = (array - np.asarray(image_mean, np.float32)) / np.asarray(image_std, np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1)[None].copy())
