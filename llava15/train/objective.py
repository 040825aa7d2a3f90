"""The training objective: summed next-token cross-entropy over the target tokens of a batch.

`Objective` wraps `Llava` so the whole forward pass, loss included, runs inside one module call
(FSDP2 gathers the root's parameters around that call). It applies `lm_head` only at positions
that carry a label: in LLaVA batches most positions (image tokens, prompts, padding) carry none,
so this skips most of the largest matmul without changing the loss. For the same reason the
decoder's last layer computes its query, output projection and MLP only there (its keys and
values still cover every position); for a deep LLM this saves little, for the offline world's
2-layer LLM it makes a stage-2 step 1.14-1.24x faster (`bench/train_speed.py --tiny`).

The loss is returned as a sum together with the number of target tokens; the loop divides by the
normaliser its rule names (`mean_per_microbatch` or `token_weighted`).

Text-only rows carry no image positions and need no image: the official code feeds a zero image
whose features are computed and then unused, which gives the same loss.

AnyRes / HD batches pass `pixel_values` as a list of per-image views with `image_sizes`; the
model encodes all views at once, merges each image's features and fills its positions (the
official `prepare_inputs_labels_for_multimodal`, list branch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llava15.config import IGNORE_INDEX
from llava15.model.llama import query_positions
from llava15.model.llava import Llava
from llava15.train.shared_prefix import summed_loss


class Objective(nn.Module):
    def __init__(self, llava: Llava) -> None:
        super().__init__()
        self.llava = llava
        # With FSDP every process must run every sharded unit in each micro-batch (their gathers
        # and reductions are collective), so a row set without images still runs the projector.
        self.keep_units_busy = False
        # `shared_prefix.summed_loss` for right-padded batches: the same loss, fewer positions
        self.shared_prefix = False
        # The decoder's last layer only at labelled positions (`hidden_states(queries=...)`): the
        # same loss; False runs it everywhere (the reference `bench/train_speed.py` compares with)
        self.last_layer_at_targets = True

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None,
                pixel_values: torch.Tensor | list[torch.Tensor] | None = None,
                image_sizes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Summed cross-entropy of predicting labels[:, 1:] from positions [:, :-1] (float32).
        `pixel_values` (N,3,H,W), or AnyRes per-image (1+tiles,3,S,S) views with `image_sizes`."""
        idle = None
        if self.keep_units_busy and pixel_values is None:
            # where the image would be encoded, so every process gathers the units in one order
            idle = self.idle_image_path()
        inputs_embeds = self.llava.embed_inputs(input_ids, pixel_values, image_sizes)
        if idle is not None:
            # adds exactly 0, but makes the decoder's backward run as it does with images (when
            # only the projector trains, each process must gather the frozen layers alike)
            inputs_embeds = inputs_embeds + 0.0 * idle.mean().to(inputs_embeds.dtype)
        if self.shared_prefix and attention_mask.dim() == 2:
            return summed_loss(self.llava.language_model, inputs_embeds, input_ids, labels,
                               attention_mask, self.llava.config.image_token_index,
                               at_targets=self.last_layer_at_targets)
        b, t, _ = inputs_embeds.shape
        if attention_mask.dim() == 4:  # packed rows: block-diagonal mask and restarting positions
            if position_ids is None:
                raise ValueError("a 4-D attention mask needs position_ids")
            mask = attention_mask
        else:
            mask, position_ids = None, torch.arange(t, device=input_ids.device).expand(b, t)
        # right-padded rows need no mask: a real token never attends to padding after it
        # position j predicts labels[j + 1]; the last position predicts none
        targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        keep = targets != IGNORE_INDEX
        queries, valid = query_positions(keep, self.last_layer_at_targets)
        hidden = self.llava.language_model.hidden_states(inputs_embeds, mask, position_ids,
                                                         queries=queries)
        logits = F.linear(hidden[valid], self.llava.language_model.output_weight())
        return F.cross_entropy(logits.float(), targets[keep], reduction="sum")

    def idle_image_path(self) -> torch.Tensor:
        """The image path on a zero input: the projector alone while the tower is frozen (and not
        sharded); the official zero image through the tower when the tower trains. AnyRes
        `unpad` models add their `image_newline`, so it too gets a (zero) gradient on every
        process (sharded parameters without a gradient on some processes break the reduction)."""
        config = self.llava.config
        if any(p.requires_grad for p in self.llava.vision_tower.parameters()):
            size = config.vision.image_size
            weight = self.llava.vision_tower.vision_model.embeddings.patch_embedding.weight
            zeros = torch.zeros(1, config.vision.num_channels, size, size, dtype=weight.dtype,
                                device=weight.device)
            features = self.llava.encode_images(zeros)
        else:
            projector = self.llava.multi_modal_projector
            weight = next(projector.parameters())
            features = projector(torch.zeros(1, 1, config.vision.hidden_size, dtype=weight.dtype,
                                             device=weight.device))
        if "unpad" in config.mm_patch_merge_type:
            features = features + self.llava.image_newline.to(features.dtype)
        return features
