"""A tiny training world for the training tests: LLM and CLIP directories, images and records.

The LLM directory is an ordinary `LlamaForCausalLM` layout with the tiny SentencePiece tokenizer of
tests/golden/tokenizer; the CLIP directory a `CLIPVisionModel` layout with its
`preprocessor_config.json`. Records follow the official formats: captions for `pretrain`,
conversations (with text-only ones mixed in) for `finetune`. The one test here checks that the
backbones load into a fresh model exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file

from llava15.config import TextConfig, VisionConfig
from llava15.data.image import ImageProcessorConfig
from llava15.model.clip import VisionTower
from llava15.model.llama import LanguageModel
from llava15.world.backbones import save_clip_dir, save_llm_dir

TOKENIZER = Path(__file__).parent / "golden" / "tokenizer"
TEXT = TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
VISION = VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                      image_size=28, patch_size=7)  # 16 image tokens
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}
SHAPES = ("square", "circle")


def make_backbones(root: Path, seed: int = 0) -> tuple[Path, Path]:
    torch.manual_seed(seed)
    llm = save_llm_dir(LanguageModel(TEXT), TOKENIZER, root / "llm")
    image_config = ImageProcessorConfig(shortest_edge=28, crop_size=(28, 28))
    clip = save_clip_dir(VisionTower(VISION), image_config, root / "clip")
    return llm, clip


def draw(path: Path, color: str, shape: str, size: tuple[int, int]) -> None:
    image = Image.new("RGB", size, (250, 250, 250))
    pixels = image.load()
    w, h = size
    for x in range(w):
        for y in range(h):
            inside = (abs(x - w / 2) < w / 4 and abs(y - h / 2) < h / 4) if shape == "square" else \
                (x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 4) ** 2
            if inside:
                pixels[x, y] = COLORS[color]
    image.save(path)


def make_data(root: Path, n_images: int = 24, n_text: int = 8, seed: int = 0) -> tuple[Path, Path, Path]:
    """images/, pretrain.json (captions) and finetune.json (conversations + text-only records)."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    pretrain, finetune = [], []
    for i in range(n_images):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        name = f"{i:03d}.png"
        draw(images / name, color, shape, (rng.randint(24, 48), rng.randint(24, 48)))
        pretrain.append({"id": f"p{i}", "image": name, "conversations": [
            {"from": "human", "value": "Describe the image briefly.\n<image>"},
            {"from": "gpt", "value": f"a {color} {shape}"}]})
        turns = [{"from": "human", "value": "<image>\nWhat color is the shape?"},
                 {"from": "gpt", "value": f"It is {color}."}]
        if i % 3 == 0:  # longer conversations next to short answers
            turns += [{"from": "human", "value": "And what shape is it? Answer with one word."},
                      {"from": "gpt", "value": f"{shape}"}]
        finetune.append({"id": f"f{i}", "image": name, "conversations": turns})
    for i in range(n_text):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        finetune.append({"id": f"t{i}", "conversations": [
            {"from": "human", "value": f"What is {a} plus {b}?"},
            {"from": "gpt", "value": f"{a} plus {b} is {a + b}."}]})
    rng.shuffle(finetune)
    (root / "pretrain.json").write_text(json.dumps(pretrain))
    (root / "finetune.json").write_text(json.dumps(finetune))
    return images, root / "pretrain.json", root / "finetune.json"


def test_backbones_load_into_a_fresh_llava(tmp_path):
    from llava15.train.config import TrainConfig
    from llava15.train.init import build_initial

    llm, clip = make_backbones(tmp_path)
    initial = build_initial(TrainConfig(llm=str(llm), vision_tower=str(clip)))
    state = initial.model.state_dict()
    saved = load_file(str(llm / "model.safetensors"))
    assert torch.equal(state["language_model.model.layers.1.mlp.up_proj.weight"],
                       saved["model.layers.1.mlp.up_proj.weight"])
    tower = load_file(str(clip / "model.safetensors"))
    assert torch.equal(state["vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight"],
                       tower["vision_model.encoder.layers.0.self_attn.q_proj.weight"])
    assert initial.config.num_image_tokens == 16 and initial.config.image_aspect_ratio == "pad"
    assert initial.config.image_token_index == -200
