"""Merging the features of AnyRes / HD views into one image's token sequence (official
`prepare_inputs_labels_for_multimodal`, 5-D branch).

`flat`: all views' tokens in order. `spatial` (LLaVA-1.5-HD): the global view's tokens, then the
tiles' feature maps joined into one large map read in raster order. `spatial_unpad` (AnyRes /
LLaVA-NeXT): the large map with the letterbox rows or columns removed and a learned
`image_newline` vector appended to every row. The token count depends only on the image size
and the configuration (`anyres_token_count`; per image of a model: `image_token_count`), so prompts
and training samples can be laid out before encoding.
"""

from __future__ import annotations

import math

import torch

from llava15.config import LlavaConfig, anyres_grid_shape

Size = tuple[int, int]  # (width, height)


def unpadded_extent(original_size: Size, rows: int, cols: int,
                    round_digits: int | None = None) -> tuple[int, int, int, int]:
    """(row_start, row_end, col_start, col_end) of the real image inside a rows x cols map that
    letterboxed it (official `unpad_image` arithmetic, with `int()` truncation).

    `round_digits=7` is transformers' LlavaNext variant, `int(round(x, 7))`: a scaled side such
    as 2.9999999999999996 then counts as 3, which can keep one more row or column per side.
    """
    width, height = original_size

    def truncate(x: float) -> int:
        return int(x if round_digits is None else round(x, round_digits))

    if width / height > cols / rows:
        new_h = truncate(height * (cols / width))
        pad = (rows - new_h) // 2
        return pad, rows - pad, 0, cols
    new_w = truncate(width * (rows / height))
    pad = (cols - new_w) // 2
    return 0, rows, pad, cols - pad


def merge_anyres_features(features: torch.Tensor, image_size: Size, grid: tuple[int, int],
                          merge_type: str, image_newline: torch.Tensor | None,
                          round_digits: int | None = None) -> torch.Tensor:
    """features (1+N, T, D) of one image (global view first) -> (T', D); `round_digits` as in
    `unpadded_extent`."""
    if merge_type == "flat":
        return features.flatten(0, 1)
    if not merge_type.startswith("spatial"):
        raise ValueError(f"unknown mm_patch_merge_type {merge_type!r}")
    base, tiles = features[0], features[1:]
    unpad = "unpad" in merge_type
    if tiles.shape[0] == 0:
        if unpad:
            return torch.cat([base, image_newline[None].to(base.dtype)], dim=0)
        return base
    side = math.isqrt(base.shape[0])
    across, down = grid
    if across * down != tiles.shape[0]:
        raise ValueError(f"grid {across}x{down} does not match {tiles.shape[0]} tiles")
    dim = tiles.shape[-1]
    tiles = tiles.view(down, across, side, side, dim)
    if not unpad:
        grid_map = tiles.permute(0, 2, 1, 3, 4).reshape(-1, dim)  # raster order over the big map
        return torch.cat([base, grid_map], dim=0)
    big = tiles.permute(4, 0, 2, 1, 3).reshape(dim, down * side, across * side)  # (D, rows, cols)
    r0, r1, c0, c1 = unpadded_extent(image_size, big.shape[1], big.shape[2], round_digits)
    big = big[:, r0:r1, c0:c1]
    newline = image_newline.to(big.dtype)[:, None, None].expand(dim, big.shape[1], 1)
    big = torch.cat([big, newline], dim=2)  # one newline column at the end of every row
    return torch.cat([base, big.flatten(1).transpose(0, 1)], dim=0)


def anyres_token_count(image_size: Size, grid: tuple[int, int], tokens_per_view: int,
                       merge_type: str, round_digits: int | None = None) -> int:
    """The number of tokens `merge_anyres_features` returns, without computing features."""
    across, down = grid
    if merge_type == "flat":
        return (1 + across * down) * tokens_per_view
    side = math.isqrt(tokens_per_view)
    if "unpad" not in merge_type:
        return tokens_per_view * (1 + across * down)
    r0, r1, c0, c1 = unpadded_extent(image_size, down * side, across * side, round_digits)
    return tokens_per_view + (r1 - r0) * (c1 - c0 + 1)


def image_token_count(config: LlavaConfig, image_size: Size) -> int:
    """The prompt positions one image of `image_size` (width, height) takes in a model of
    `config`: `num_image_tokens` for one-view models; for AnyRes / HD the merged count of the
    image's grid. The engine lays out prompts and the training data expands `<image>` with it."""
    if config.image_aspect_ratio != "anyres":
        return config.num_image_tokens
    grid = anyres_grid_shape(image_size, config.image_grid_pinpoints, config.vision.image_size)
    return anyres_token_count(image_size, grid, config.num_image_tokens, config.mm_patch_merge_type,
                              config.unpad_round_digits)
