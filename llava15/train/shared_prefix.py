"""An exact, cheaper decoder pass for right-padded training batches: the rows' common prefix once,
then the rest of the rows in calls of similar length.

Every row of a LLaVA batch starts with the same tokens (the template's system prompt and first
role: 35 tokens of a vicuna_v1 row), and the collator pads every row to the longest. The plain
pass runs the decoder over all B x T positions. This one runs

1. the longest prefix that all rows share (the same token ids, no image position, no target) once,
   as a batch of one, keeping each layer's keys and values (a `KVCache`);
2. the rest of the rows, sorted by length and cut into calls (`cut_by_length`), each call over
   positions P.. of its own longest row only, attending to the prefix's keys and values
   (broadcast over the call's rows) and to its own.

Attention is causal, so a prefix position's hidden state does not depend on what follows it:
every real position sees the same keys and values as in the plain pass, and the summed loss is
the same up to float summation order. So are the gradients: the prefix's share of each row's
gradient reaches the prefix once, summed over rows by the broadcast's backward.

What it saves is what padding and the repeated prefix cost: on the offline world's stage 2 (rows
of about 105 real tokens, 35 of them the prefix, padded to about 150) about 40% of the decoder's
positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llava15.config import IGNORE_INDEX
from llava15.model.calls import CALL_COST, cut_by_length
from llava15.model.llama import KVCache, LanguageModel, attention_bias, query_positions


def shared_prefix_length(input_ids: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor,
                         image_token_index: int) -> int:
    """P: how many leading positions every row shares and the prefix pass may compute alone.

    Position j qualifies while all rows have the same token there, it is not an image position
    (image features differ per row), and the target it predicts (labels[:, j+1]) is ignored in
    every row (the prefix pass computes no logits). At most min(lengths) - 1, so every row keeps
    at least one position of its own.
    """
    t = input_ids.shape[1]
    same = (input_ids == input_ids[:1]).all(0) & (input_ids[0] != image_token_index)
    untargeted = torch.ones(t, dtype=torch.bool, device=input_ids.device)
    untargeted[:-1] = (labels[:, 1:] == IGNORE_INDEX).all(0)
    qualifies = (same & untargeted).long()
    prefix = int(qualifies.cumprod(0).sum())  # leading run of qualifying positions
    return max(0, min(prefix, int(lengths.min()) - 1))


def expand_cache(prefix: KVCache, rows: int, capacity: int) -> KVCache:
    """A `rows`-row cache of `capacity` positions whose first `prefix.length` hold the prefix's
    keys and values (broadcast over rows; the gradient sums back). The rest is filled by the pass."""
    def grown(t: torch.Tensor) -> torch.Tensor:
        p = prefix.length
        kept = t[:, :, :p].expand(rows, -1, -1, -1)
        room = t.new_zeros(rows, t.shape[1], capacity - p, t.shape[3])
        return torch.cat([kept, room], dim=2)
    return KVCache([grown(k) for k in prefix.keys], [grown(v) for v in prefix.values], prefix.length)


def summed_loss(language_model: LanguageModel, inputs_embeds: torch.Tensor, input_ids: torch.Tensor,
                labels: torch.Tensor, attention_mask: torch.Tensor, image_token_index: int,
                call_cost: int = CALL_COST, at_targets: bool = True) -> torch.Tensor:
    """Summed next-token cross-entropy of a right-padded batch (float32), as the plain pass
    `hidden_states` over (B,T) followed by `lm_head` at labelled positions would give it.

    `attention_mask` (B,T) must be right padding: each row's ones first. Raises ValueError if not.
    `at_targets`: the last layer only at labelled positions (`LanguageModel.hidden_states`).
    """
    lengths = attention_mask.sum(1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if not bool((attention_mask == (positions[None] < lengths[:, None])).all()):
        raise ValueError("shared_prefix needs right-padded rows (each row's real tokens first)")
    config = language_model.config
    p = shared_prefix_length(input_ids, labels, lengths, image_token_index)
    prefix = KVCache.allocate(config, 1, p, inputs_embeds.dtype, inputs_embeds.device)
    if p:
        language_model.hidden_states(inputs_embeds[:1, :p], None, positions[None, :p], prefix)
        prefix.length = p
    weight = language_model.output_weight()
    kept_hidden, kept_targets = [], []
    for rows in cut_by_length([int(n) - p for n in lengths], call_cost):
        index = torch.tensor(rows, device=input_ids.device)
        rest = int(lengths[index].max()) - p  # this call's positions after the prefix
        cache = expand_cache(prefix, len(rows), p + rest)
        mask = attention_bias(attention_mask[index, :p + rest], rest)
        # position j predicts labels[j + 1]; the last position of a full-length row predicts none
        targets = labels[index, p + 1:p + rest + 1]
        targets = F.pad(targets, (0, rest - targets.shape[1]), value=IGNORE_INDEX)
        keep = targets != IGNORE_INDEX
        queries, valid = query_positions(keep, at_targets)
        hidden = language_model.hidden_states(inputs_embeds[index, p:p + rest], mask,
                                              positions[p:p + rest].expand(len(rows), rest), cache,
                                              queries)
        kept_hidden.append(hidden[valid])
        kept_targets.append(targets[keep])
    logits = F.linear(torch.cat(kept_hidden), weight)
    return F.cross_entropy(logits.float(), torch.cat(kept_targets), reduction="sum")
