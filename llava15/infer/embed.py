"""Input embeddings of a generation batch, each distinct image encoded once.

Evaluation batches often hold the same image several times (POPE asks several questions about
each image, MME two, MMBench's circular rotations four). The vision tower is the dearest part of
a prefill per image, so images whose pixel values are equal are encoded once and their features
reused; the merge is `Llava.embed_inputs`' own rule (text embeddings with the image positions
filled, in order, by the image features). Batches without repeats, and AnyRes views, go through
`Llava.embed_inputs` itself.
"""

from __future__ import annotations

import torch

from llava15.model.llava import Llava


def distinct_images(pixel_values: torch.Tensor) -> tuple[list[int], list[int]]:
    """(N,3,H,W) -> (indices of the first copy of each distinct image, for each image the
    position of its copy in that list). Images are equal when every value is equal."""
    firsts: list[int] = []
    inverse: list[int] = []
    by_sum: dict[float, list[int]] = {}  # a cheap key first; equal images have equal sums
    for i, image in enumerate(pixel_values):
        candidates = by_sum.setdefault(float(image.sum()), [])
        for slot in candidates:
            if torch.equal(pixel_values[firsts[slot]], image):
                inverse.append(slot)
                break
        else:
            candidates.append(len(firsts))
            inverse.append(len(firsts))
            firsts.append(i)
    return firsts, inverse


def embed_batch(model: Llava, input_ids: torch.Tensor,
                pixel_values: torch.Tensor | list[torch.Tensor] | None,
                image_sizes: list[tuple[int, int]] | None = None,
                ) -> tuple[torch.Tensor, list[int] | None]:
    """input_ids (B,T) with expanded image positions -> inputs_embeds (B,T,D), as
    `model.embed_inputs`, with every distinct one-view image through the vision tower once;
    and for one-view images, each image's number among the distinct ones (equal numbers, equal
    features), else None."""
    if not isinstance(pixel_values, torch.Tensor):
        return model.embed_inputs(input_ids, pixel_values, image_sizes), None
    firsts, inverse = distinct_images(pixel_values)
    if len(firsts) == len(pixel_values):
        return model.embed_inputs(input_ids, pixel_values, image_sizes), inverse
    image_mask = input_ids == model.config.image_token_index
    n_positions, per_image = int(image_mask.sum()), model.config.num_image_tokens
    if n_positions != len(pixel_values) * per_image:
        raise ValueError(f"image tokens and image features do not match: input_ids hold "
                         f"{n_positions} image-token positions, {len(pixel_values)} image(s) x "
                         f"{per_image} give {len(pixel_values) * per_image} features")
    features = model.encode_images(pixel_values[firsts])[inverse].flatten(0, 1)
    inputs_embeds = model.language_model.model.embed_tokens(input_ids.masked_fill(image_mask, 0))
    return (inputs_embeds.masked_scatter(image_mask.unsqueeze(-1), features.to(inputs_embeds.dtype)),
            inverse)
