"""Stage 0 of the offline world: backbones that the real recipe would download, trained here.

1. A LLaMA-style SentencePiece tokenizer trained on the synthetic text.
2. A tiny LLaMA LLM pretrained on that text (next-token prediction): it plays Vicuna.
3. A tiny CLIP vision tower trained contrastively against a tiny text tower on the stage-1
   captions: it plays CLIP ViT-L/14. This step is what makes the recipe work at this size:
   trained jointly from random weights, the model learns to ignore the image
   (docs/design.md, 'The offline world').

Each is saved as an ordinary directory (`backbones.py`), so stages 1 and 2 load them exactly
as they load the real backbones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llava15.config import TextConfig, VisionConfig
from llava15.data.conversation import get_template, render_prompt
from llava15.data.image import ImageProcessorConfig, load_image, process_images
from llava15.data.tokenizer import Tokenizer
from llava15.model.clip import VisionTower
from llava15.model.llama import LanguageModel

Progress = Callable[[int, dict], None]  # (step, metrics) -> None


@dataclass(frozen=True)
class Stage0Config:
    vocab_size: int = 1024
    llm: TextConfig = TextConfig(vocab_size=1024, hidden_size=128, intermediate_size=384,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                 max_position_embeddings=512)
    # 96 px in 32 px patches: one token per cell of the world's 3 x 3 grid, so the LLM reads
    # 9 image tokens, each describing one cell (the region loss below trains them to).
    vision: VisionConfig = VisionConfig(hidden_size=128, intermediate_size=384, num_hidden_layers=3,
                                        num_attention_heads=4, image_size=96, patch_size=32)
    select_layer: int = -2  # the layer LLaVA reads (mm_vision_select_layer)
    llm_steps: int = 400  # 600 and 400 (with clip_steps 600 and 500) gave the demo 0.638 and 0.632
    llm_batch_size: int = 8
    llm_seq_len: int = 256
    llm_lr: float = 2e-3
    clip_steps: int = 500
    clip_batch_size: int = 64
    clip_lr: float = 1e-3
    region_weight: float = 2.0  # weight of the region-level loss (when regions are given)
    seed: int = 0


def write_tokenizer_config(out_dir: Path, legacy: bool) -> None:
    """The files `LlamaTokenizer.save_pretrained` writes beside `tokenizer.model`."""
    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
              "unk_token": "<unk>", "pad_token": None, "legacy": legacy, "model_max_length": 2048,
              "tokenizer_class": "LlamaTokenizer", "clean_up_tokenization_spaces": False,
              "sp_model_kwargs": {}}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def train_tokenizer(text_file: str | Path, out_dir: str | Path, vocab_size: int) -> Path:
    """A LLaMA-style SentencePiece BPE model (byte fallback, split digits, ids unk 0 / bos 1 /
    eos 2), saved as `tokenizer.model` + the slow tokenizer's config files."""
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The conversation template's words are part of the language the LLM will read: give them
    # pieces of their own (as LLaMA has "USER"), from a few rendered template lines.
    corpus = out / "tokenizer_corpus.txt"
    template = get_template("vicuna_v1")
    lines = [render_prompt(template, [("user", "Hello."), ("assistant", "Hi."), ("user", "Hi."),
                                      ("assistant", None)])] * 200
    corpus.write_text(Path(text_file).read_text() + "\n" + "\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, split_digits=True, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, add_dummy_prefix=True, normalization_rule_name="identity",
        character_coverage=1.0, num_threads=2, minloglevel=2, hard_vocab_limit=False)
    (out / "tokenizer.vocab").unlink(missing_ok=True)
    corpus.unlink()
    # legacy=True: text after "</s>" gets the dummy-prefix "▁" as when tokenized alone, so the
    # official preprocess_v1 length arithmetic holds for every multi-turn sample (with
    # legacy=False and HEAD's correction, a tokenizer whose "USER" splits unlike LLaMA's has
    # every multi-turn sample masked as a "tokenization mismatch").
    write_tokenizer_config(out, legacy=True)
    return out


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def token_stream(paragraphs: Sequence[str], tokenizer: Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """All paragraphs as one id stream, each `<s> text </s>`, for language-model pretraining,
    and the offset where each paragraph starts."""
    ids: list[int] = []
    starts: list[int] = []
    for paragraph in paragraphs:
        starts.append(len(ids))
        ids.extend(tokenizer.encode(paragraph))
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(starts, dtype=torch.long)


def pretrain_llm(paragraphs: Sequence[str], tokenizer: Tokenizer, cfg: Stage0Config,
                 progress: Progress | None = None) -> LanguageModel:
    """Next-token prediction on windows of the synthetic text, each from a random paragraph's
    start."""
    torch.manual_seed(cfg.seed)
    text_config = cfg.llm if cfg.llm.vocab_size >= tokenizer.vocab_size else \
        TextConfig(**{**cfg.llm.__dict__, "vocab_size": tokenizer.vocab_size})
    model = LanguageModel(text_config)
    stream, paragraph_starts = token_stream(paragraphs, tokenizer)
    if len(stream) <= cfg.llm_seq_len + 1:
        raise ValueError(f"only {len(stream)} tokens of text: too little to pretrain on")
    # Windows open at a paragraph's start, so a question is read with the scene before it.
    paragraph_starts = paragraph_starts[paragraph_starts < len(stream) - cfg.llm_seq_len - 1]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.llm_lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for step in range(cfg.llm_steps):
        starts = paragraph_starts[torch.randint(0, len(paragraph_starts), (cfg.llm_batch_size,),
                                                generator=generator)]
        window = torch.stack([stream[s:s + cfg.llm_seq_len + 1] for s in starts.tolist()])
        logits = model(model.model.embed_tokens(window[:, :-1]))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, cfg.llm_steps, cfg.llm_lr, max(1, cfg.llm_steps // 20))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if progress is not None:
            progress(step, {"loss": loss.item(), "lr": optimizer.param_groups[0]["lr"]})
    return model.eval()


class TextTower(nn.Module):
    """A tiny bidirectional transformer over caption ids, mean-pooled: CLIP's text side."""

    def __init__(self, vocab_size: int, width: int, layers: int = 2, heads: int = 4,
                 max_len: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Parameter(torch.zeros(max_len, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.max_len = max_len

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position[: ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=~mask)
        return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def pad_captions(captions: Sequence[list[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = min(max_len, max(len(c) for c in captions))
    ids = torch.zeros(len(captions), width, dtype=torch.long)
    mask = torch.zeros(len(captions), width, dtype=torch.bool)
    for row, caption in enumerate(captions):
        caption = caption[:width]
        ids[row, :len(caption)] = torch.tensor(caption)
        mask[row, :len(caption)] = True
    return ids, mask


Region = tuple[Sequence[float], str]  # (normalised [x1, y1, x2, y2], phrase)


def region_pooling(regions: Sequence[Sequence[Region]], grid: int,
                   ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per image, each region's pooling weights over the `grid` x `grid` patches: the mean of
    the patches whose centres lie in its box (the nearest patch when none does).

    Returns weights (N, R, grid*grid) padded with zero rows, phrase ids (N, R) with -1 for
    padding, and the distinct phrases the ids index.
    """
    most = max((len(r) for r in regions), default=0)
    weights = torch.zeros(len(regions), most, grid * grid)
    ids = torch.full((len(regions), most), -1, dtype=torch.long)
    phrases: dict[str, int] = {}
    centres = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    cy, cx = centres.repeat_interleave(grid), centres.repeat(grid)  # reading order
    for i, image_regions in enumerate(regions):
        for j, (box, phrase) in enumerate(image_regions):
            x1, y1, x2, y2 = box
            inside = (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)
            if not inside.any():
                inside = torch.zeros_like(inside)
                inside[((cx - (x1 + x2) / 2) ** 2 + (cy - (y1 + y2) / 2) ** 2).argmin()] = True
            weights[i, j] = inside.float() / inside.sum()
            ids[i, j] = phrases.setdefault(phrase, len(phrases))
    return weights, ids, list(phrases)


def region_loss(features: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor,
                phrase_embeds: Callable[[list[int]], torch.Tensor], head: nn.Module,
                scale: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Symmetric InfoNCE between the batch's regions and its distinct phrases. Regions that
    share a phrase (two 'gray background at the top' cells) are all positives of it: the text
    side's target spreads evenly over them. Returns the loss and region->phrase accuracy."""
    pooled = torch.einsum("brp,bpd->brd", weights, features)[ids >= 0]
    used, target = torch.unique(ids[ids >= 0], return_inverse=True)
    regions = F.normalize(head(pooled), dim=-1)
    logits = scale * regions @ phrase_embeds(used.tolist()).T  # (regions, phrases)
    spread = (target[None, :] == torch.arange(len(used))[:, None]).float()
    spread = spread / spread.sum(1, keepdim=True)
    loss = (F.cross_entropy(logits, target)
            - (spread * F.log_softmax(logits.T, dim=1)).sum(1).mean()) / 2
    return loss, (logits.argmax(1) == target).float().mean().item()


def pretrain_clip(image_paths: Sequence[str | Path], captions: Sequence[str], tokenizer: Tokenizer,
                  image_config: ImageProcessorConfig, cfg: Stage0Config,
                  progress: Progress | None = None,
                  regions: Sequence[Sequence[Region]] | None = None) -> VisionTower:
    """Symmetric InfoNCE between mean-pooled patch features of the tower and the text tower;
    with `regions` (one list per image), plus `cfg.region_weight` times the same loss between
    each region's pooled patch features and its phrase (`region_loss`)."""
    if len(image_paths) != len(captions) or len(captions) < 2:
        raise ValueError(f"need matching images and captions, got {len(image_paths)} and {len(captions)}")
    if regions is not None and len(regions) != len(captions):
        raise ValueError(f"need one region list per image, got {len(regions)} for {len(captions)} images")
    torch.manual_seed(cfg.seed)
    pixels = process_images([load_image(p) for p in image_paths], image_config, "square")
    caption_ids = [tokenizer.encode(c, add_bos=False) for c in captions]
    tower = VisionTower(cfg.vision)
    width = cfg.vision.hidden_size
    text = TextTower(tokenizer.vocab_size, width)
    image_head, text_head = nn.Linear(width, width), nn.Linear(width, width)
    log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
    params = [*tower.parameters(), *text.parameters(), *image_head.parameters(),
              *text_head.parameters(), log_scale]
    if regions is not None:
        region_head = nn.Linear(width, width)
        params += region_head.parameters()
        pool, phrase_ids, phrases = region_pooling(regions, cfg.vision.image_size // cfg.vision.patch_size)
        phrase_tokens = [tokenizer.encode(p, add_bos=False) for p in phrases]

    def embed_text(token_lists: list[list[int]]) -> torch.Tensor:
        ids, mask = pad_captions(token_lists, text.max_len)
        return F.normalize(text_head(text(ids, mask)), dim=-1)

    optimizer = torch.optim.AdamW(params, lr=cfg.clip_lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(cfg.seed)
    batch = min(cfg.clip_batch_size, len(captions))
    skip = int(cfg.vision.use_cls_token)
    for step in range(cfg.clip_steps):
        index = torch.randperm(len(captions), generator=generator)[:batch]
        # Train the features LLaVA will read: the patch tokens (CLS dropped) of the layer
        # `mm_vision_select_layer` picks (-2, as in v1.5). Layers above it are never run, in
        # this loss as in LLaVA.
        patches = tower(pixels[index], select_layer=cfg.select_layer)[:, skip:]
        image_embeds = F.normalize(image_head(patches.mean(1)), dim=-1)
        text_embeds = embed_text([caption_ids[i] for i in index.tolist()])
        scale = log_scale.exp().clamp(max=100)
        logits = scale * image_embeds @ text_embeds.T
        target = torch.arange(batch)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        metrics = {"loss": loss.item(), "match_accuracy": (logits.argmax(1) == target).float().mean().item()}
        if regions is not None:
            loss_r, accuracy_r = region_loss(
                patches, pool[index], phrase_ids[index],
                lambda used: embed_text([phrase_tokens[i] for i in used]), region_head, scale)
            loss = loss + cfg.region_weight * loss_r
            metrics.update(region_loss=loss_r.item(), region_accuracy=accuracy_r)
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, cfg.clip_steps, cfg.clip_lr, max(1, cfg.clip_steps // 20))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if progress is not None:
            progress(step, metrics)
    return tower.eval()
