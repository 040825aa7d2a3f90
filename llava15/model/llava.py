"""LLaVA: CLIP layer -2 patch features -> MLP projector -> image-token positions -> LLaMA -> loss.

`input_ids` arrive with every image already expanded to `config.num_image_tokens` copies of
`config.image_token_index` (the tokenizer side does this, so sequence lengths are known before
batching). The merge is one `masked_scatter`, guarded by a count check; images are consumed in
order, row by row, as the official code consumes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llava15.config import IGNORE_INDEX, LlavaConfig, anyres_grid_shape
from llava15.model.anyres import merge_anyres_features
from llava15.model.clip import VisionTower
from llava15.model.llama import KVCache, LanguageModel
from llava15.model.projector import Projector


@dataclass
class LlavaOutput:
    logits: torch.Tensor  # (B, T, V)
    loss: torch.Tensor | None = None


class Llava(nn.Module):
    def __init__(self, config: LlavaConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_tower = VisionTower(config.vision)
        self.multi_modal_projector = Projector(config.mm_projector_type, config.vision.hidden_size,
                                               config.text.hidden_size)
        self.language_model = LanguageModel(config.text)
        if "unpad" in config.mm_patch_merge_type:  # AnyRes: marks the end of every feature row
            self.image_newline = nn.Parameter(torch.randn(config.text.hidden_size)
                                              / config.text.hidden_size ** 0.5)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (N,3,H,W) -> image_embeds (N, num_image_tokens, D_llm).

        The tower runs without autograd unless one of its parameters trains (it is frozen in
        both official stages).
        """
        tower_trains = any(p.requires_grad for p in self.vision_tower.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and tower_trains):
            hidden = self.vision_tower(pixel_values, self.config.mm_vision_select_layer)
        if self.config.mm_vision_select_feature == "patch" and self.config.vision.use_cls_token:
            hidden = hidden[:, 1:]  # drop CLS: (N, 576, 1024)
        elif self.config.mm_vision_select_feature not in ("patch", "cls_patch"):
            raise ValueError(f"unknown mm_vision_select_feature {self.config.mm_vision_select_feature!r}")
        projector_dtype = next(self.multi_modal_projector.parameters(), hidden).dtype
        return self.multi_modal_projector(hidden.to(projector_dtype))

    def encode_anyres(self, views: list[torch.Tensor], image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """AnyRes / HD: per image (1+N, 3, S, S) views and its (width, height) -> all images'
        merged tokens (sum of T', D). All views are encoded in one batch."""
        if len(views) != len(image_sizes):
            raise ValueError(f"{len(views)} images but {len(image_sizes)} image sizes")
        encoded = self.encode_images(torch.cat(views)).split([v.shape[0] for v in views])
        newline = self.image_newline if "unpad" in self.config.mm_patch_merge_type else None
        merged = []
        for features, size in zip(encoded, image_sizes):
            grid = anyres_grid_shape(size, self.config.image_grid_pinpoints,
                                     self.config.vision.image_size)
            merged.append(merge_anyres_features(features, size, grid, self.config.mm_patch_merge_type,
                                                newline, self.config.unpad_round_digits))
        return torch.cat(merged)

    def embed_inputs(self, input_ids: torch.Tensor,
                     pixel_values: torch.Tensor | list[torch.Tensor] | None = None,
                     image_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """input_ids (B,T) with image positions -> inputs_embeds (B,T,D).

        `pixel_values` is (N,3,H,W) for one view per image, or for AnyRes a list of per-image
        (1+N_i,3,S,S) views together with `image_sizes` [(width, height)].
        """
        image_mask = input_ids == self.config.image_token_index
        embed = self.language_model.model.embed_tokens
        inputs_embeds = embed(input_ids.masked_fill(image_mask, 0))
        n_positions = int(image_mask.sum())
        if pixel_values is None or len(pixel_values) == 0:
            if n_positions:
                raise ValueError(f"input_ids hold {n_positions} image-token positions but no "
                                 "pixel_values were given")
            return inputs_embeds
        if isinstance(pixel_values, list):
            image_embeds = self.encode_anyres(pixel_values, image_sizes or [])  # (sum T', D)
            described = f"{len(pixel_values)} AnyRes image(s) give {image_embeds.shape[0]} features"
        else:
            image_embeds = self.encode_images(pixel_values).flatten(0, 1)  # (N*T_img, D)
            described = (f"{pixel_values.shape[0]} image(s) x {self.config.num_image_tokens} give "
                         f"{image_embeds.shape[0]} features")
        if n_positions != image_embeds.shape[0]:
            raise ValueError(
                f"image tokens and image features do not match: input_ids hold {n_positions} "
                f"image-token positions (id {self.config.image_token_index}), {described}")
        return inputs_embeds.masked_scatter(image_mask.unsqueeze(-1),
                                            image_embeds.to(inputs_embeds.dtype))

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               cache: KVCache) -> torch.Tensor:
        """Logits (B,T,V) for generated tokens, fed after a prefill. They are all text: an id
        equal to `image_token_index` (a real vocabulary id in llava-hf checkpoints, which a model
        may emit) is the ordinary token it is, as transformers decodes it, not an image slot."""
        inputs_embeds = self.language_model.model.embed_tokens(input_ids)
        return self.language_model(inputs_embeds, attention_mask, cache=cache)

    def forward(self, input_ids: torch.Tensor,
                pixel_values: torch.Tensor | list[torch.Tensor] | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: KVCache | None = None,
                logits_to_keep: int = 0,
                image_sizes: list[tuple[int, int]] | None = None) -> LlavaOutput:
        """Logits for every position, and with `labels` the mean next-token cross-entropy over
        positions whose label is not IGNORE_INDEX (the official loss)."""
        inputs_embeds = self.embed_inputs(input_ids, pixel_values, image_sizes)
        logits = self.language_model(inputs_embeds, attention_mask, position_ids, cache,
                                     logits_to_keep)
        loss = None
        if labels is not None:
            loss = causal_lm_loss(logits, labels)
        return LlavaOutput(logits=logits, loss=loss)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Shifted cross-entropy with ignore index -100, averaged over the counted tokens."""
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shift_labels = labels[:, 1:].reshape(-1).to(logits.device)
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX)
