"""The inference engine behind chat, predict, eval and serve.

`Engine` = model + tokenizer + image processor + conversation template. Prompts are strings in
the official form (the image as the literal `<image>`); they are tokenized chunk by chunk as the
official `tokenizer_image_token` does, and each image becomes `num_image_tokens` positions.
Decoded answers are `decode(new_tokens, skip_special_tokens=True).strip()`, as officially.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from llava15.data.anyres import process_anyres_image
from llava15.data.conversation import Template, get_template, render_prompt
from llava15.data.image import ImageProcessorConfig, load_image, process_images
from llava15.data.tokenizer import Tokenizer, expand_image_tokens, tokenizer_image_token
from llava15.infer.generate import SamplingParams, check_context, generate_tokens, optimize_for_cpu
from llava15.infer.textstream import StopStrings, TextDeltas
from llava15.model.anyres import image_token_count
from llava15.model.llava import Llava

ImageLike = str | Path | bytes | Image.Image


@dataclass
class Request:
    """One generation: an official-form prompt string and the images its `<image>` tokens name."""

    prompt: str
    images: list[ImageLike] = field(default_factory=list)
    params: SamplingParams = field(default_factory=SamplingParams)


class Engine:
    def __init__(self, model: Llava, tokenizer: Tokenizer, image_config: ImageProcessorConfig,
                 conv_mode: str = "vicuna_v1", model_id: str = "llava15") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_config = image_config
        self.template: Template = get_template(conv_mode)
        self.model_id = model_id

    @property
    def config(self):
        return self.model.config

    def image_token_counts(self, sizes: Sequence[tuple[int, int]]) -> list[int]:
        """Positions each image takes in the prompt: fixed for one-view models, a function of
        the image size for AnyRes / HD models."""
        return [image_token_count(self.config, size) for size in sizes]  # as training expands them

    def encode(self, prompt: str, image_sizes: Sequence[tuple[int, int]] = ()) -> list[int]:
        """Official-form prompt -> input ids with every image expanded to its token positions
        (`image_sizes` as (width, height) are needed for AnyRes models only)."""
        ids = tokenizer_image_token(prompt, self.tokenizer, self.config.image_token_index)
        index = self.config.image_token_index
        if self.config.image_aspect_ratio != "anyres":
            return expand_image_tokens(ids, None, index, self.config.num_image_tokens)[0]
        counts = iter(self.image_token_counts(image_sizes))
        expanded: list[int] = []
        for token in ids:
            expanded.extend([index] * next(counts) if token == index else [token])
        return expanded

    def load_images(self, images: Sequence[ImageLike]) -> list[Image.Image]:
        """RGB images; a PIL image already in RGB is passed on as is (the same object, so that
        `pixel_values` sees a repeated image as one)."""
        loaded = [image if isinstance(image, Image.Image) else load_image(image) for image in images]
        return [image if image.mode == "RGB" else image.convert("RGB") for image in loaded]

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor | list[torch.Tensor] | None:
        """(N,3,H,W) for one-view models; for AnyRes a list of per-image (1+tiles,3,S,S).
        An image object given several times is preprocessed once."""
        if not images:
            return None
        weight = next(self.model.parameters())  # pixels go where the model is (a GPU too)
        if self.config.image_aspect_ratio == "anyres":
            return [process_anyres_image(image, self.image_config, list(self.config.image_grid_pinpoints))
                    .to(weight.device, weight.dtype) for image in images]
        distinct = list({id(image): image for image in images}.values())
        pixels = process_images(distinct, self.image_config, self.config.image_aspect_ratio).to(
            weight.device, weight.dtype)
        if len(distinct) == len(images):
            return pixels
        slot = {id(image): i for i, image in enumerate(distinct)}
        return pixels[[slot[id(image)] for image in images]]

    def image_cost(self, size: tuple[int, int] = (640, 480)) -> dict:
        """What one image of `size` (width, height) costs: prompt positions and encode time.
        Constant for one-view models; grows with the grid for AnyRes / HD models."""
        import time

        image = Image.new("RGB", size, (128, 128, 128))
        pixel_values = self.pixel_values([image])
        with torch.inference_mode():
            for _ in range(2):  # the second call is timed: the first pays one-off warm-up costs
                started = time.perf_counter()
                if isinstance(pixel_values, list):
                    self.model.encode_anyres(pixel_values, [size])
                else:
                    self.model.encode_images(pixel_values)
        return {"image_size": list(size), "image_tokens": self.image_token_counts([size])[0],
                "views": 1 if not isinstance(pixel_values, list) else int(pixel_values[0].shape[0]),
                "encode_ms": round(1000 * (time.perf_counter() - started), 1)}

    def build_prompt(self, messages: Sequence[tuple[str, str | None]]) -> str:
        """(role, text) turns -> the template's prompt ending with the generation prompt."""
        turns = list(messages)
        if not turns or turns[-1][0] != "assistant":
            turns.append(("assistant", None))
        return render_prompt(self.template, turns)

    def check_fits(self, request: Request) -> None:
        """Raise `ContextLengthError` when the request's prompt (its images expanded) leaves no
        room to answer in the model's context, so that a caller can refuse or skip that one
        request before it is batched with others: in a batch it would fail them all."""
        images = self.load_images(request.images) if self.config.image_aspect_ratio == "anyres" else []
        ids = self.encode(request.prompt, [image.size for image in images])
        check_context(len(ids), self.config.text.max_position_embeddings)

    def stream_batch(self, requests: Sequence[Request]) -> Iterator[tuple[int, int]]:
        """Yield `(request index, token id)` for a batch decoded together."""
        for i, request in enumerate(requests):
            n_tokens = request.prompt.count("<image>")
            if n_tokens != len(request.images):
                raise ValueError(f"request {i}: the prompt names {n_tokens} image(s) with <image> "
                                 f"but {len(request.images)} image(s) were given")
        loaded = [self.load_images(r.images) for r in requests]
        prompts = [self.encode(r.prompt, [image.size for image in images])
                   for r, images in zip(requests, loaded)]
        images = [image for row in loaded for image in row]
        pixel_values = self.pixel_values(images)
        image_sizes = [image.size for image in images]
        stops = [tuple(r.params.stop) for r in requests]
        stop_check = StopStrings(self.tokenizer, stops) if any(stops) else None
        tok = self.tokenizer
        yield from generate_tokens(self.model, prompts, pixel_values, [r.params for r in requests],
                                   [tok.eos_token_id], tok.pad_token_id or 0, stop_check,
                                   image_sizes=image_sizes)

    def generate(self, requests: Sequence[Request]) -> list[str]:
        """Answers in request order: decoded new tokens, special tokens skipped, stripped."""
        tokens: list[list[int]] = [[] for _ in requests]
        for row, token in self.stream_batch(requests):
            tokens[row].append(token)
        return [StopStrings.trim(self.tokenizer.decode(t), r.params.stop).strip()
                for t, r in zip(tokens, requests)]

    def stream(self, request: Request) -> Iterator[str]:
        """Text deltas of one request as they are decoded; joined, they equal `generate`'s
        answer (see `TextDeltas` for what is held back and why)."""
        deltas = TextDeltas(self.tokenizer, request.params.stop)
        for _, token in self.stream_batch([request]):
            if delta := deltas.push(token):
                yield delta
        if rest := deltas.finish():
            yield rest

    def chat(self, messages: Sequence[tuple[str, str | None]], images: Sequence[ImageLike] = (),
             **params) -> str:
        """One answer to a conversation; the first user turn gets `<image>\\n` per image when
        its text does not place the images itself (as the official CLI does)."""
        turns = list(messages)
        if images and not any(text and "<image>" in text for _, text in turns):
            role, text = turns[0]
            turns[0] = (role, "<image>\n" * len(images) + (text or ""))
        request = Request(self.build_prompt(turns), list(images), SamplingParams(**params))
        return self.generate([request])[0]


def load_engine(path: str | Path, *, model_base: str | None = None, vision_tower: str | None = None,
                conv_mode: str | None = None, device: str | torch.device | None = None,
                dtype: str | torch.dtype | None = None, load_8bit: bool = False,
                load_4bit: bool = False, mmproj: str | Path | None = None) -> Engine:
    """Load any supported checkpoint directory as an Engine (nothing is downloaded).

    `device` is "cpu", "cuda", "cuda:N" or "auto"/None (a GPU when one is visible); `dtype` the
    language model's ("float32", "float16", "bfloat16" or a torch dtype; None: float16 on CUDA,
    on the CPU float32 when it fits in memory, else bfloat16); `load_8bit` / `load_4bit` the
    official quantization flags. See `llava15.checkpoint.placement` for what each choice means and
    when it is refused (before any weight is read). A GGUF language model loads with `mmproj`,
    its llama.cpp vision file (found beside it when not given)."""
    from llava15.checkpoint import load_llava
    from llava15.checkpoint.placement import PlacementRequest
    from llava15.data.tokenizer import load_tokenizer

    request = PlacementRequest(device, dtype, load_8bit, load_4bit)
    loaded = load_llava(path, model_base=model_base, vision_tower=vision_tower, placement=request,
                        mmproj=mmproj)
    tokenizer = load_tokenizer(loaded.tokenizer_dir)
    # where inference starts: the weights laid out (and q/k/v, gate/up fused) for this machine
    optimize_for_cpu(loaded.model)
    return Engine(loaded.model, tokenizer, loaded.image_processor,
                  conv_mode or loaded.config.conv_mode, model_id=model_name_from_path(path))


def model_name_from_path(path: str | Path) -> str:
    """The official `get_model_name_from_path`: the last component, or `parent_checkpoint-N`."""
    parts = str(path).strip("/").split("/")
    if parts[-1].startswith("checkpoint-") and len(parts) > 1:
        return parts[-2] + "_" + parts[-1]
    return parts[-1]
