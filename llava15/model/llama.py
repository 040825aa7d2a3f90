"""The LLaMA-family decoder (LLaMA-2 / Vicuna, Mistral, Qwen2-style q/k/v bias as switches).

RMSNorm, rotary position embeddings (rope_theta from the config), grouped-query attention through
`scaled_dot_product_attention`, SwiGLU MLPs. Parameter names match `transformers.LlamaForCausalLM`.

The KV cache is a plain object passed in and returned, not state owned by the modules: a
preallocated `(B, H_kv, capacity, Dh)` buffer per layer plus the number of filled positions.
All rows share one length; left padding is expressed through `attention_mask`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from llava15.config import TextConfig
from llava15.model.linear import apply_linear, linear


@dataclass
class KVCache:
    keys: list[torch.Tensor]  # per layer (B, H_kv, capacity, Dh)
    values: list[torch.Tensor]
    length: int = 0  # positions filled so far (the same for every row)

    @classmethod
    def allocate(cls, config: TextConfig, batch_size: int, capacity: int,
                 dtype: torch.dtype, device: torch.device | str = "cpu") -> "KVCache":
        shape = (batch_size, config.num_key_value_heads, capacity, config.head_dim)
        n = config.num_hidden_layers
        return cls([torch.empty(shape, dtype=dtype, device=device) for _ in range(n)],
                   [torch.empty(shape, dtype=dtype, device=device) for _ in range(n)])

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def select(self, rows: torch.Tensor) -> "KVCache":
        """Keep only the given batch rows (used when finished sequences leave a batch)."""
        return KVCache([k[rows] for k in self.keys], [v[rows] for v in self.values], self.length)


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """position_ids (B,T) -> cos, sin (B,1,T,Dh), computed in float32 as HF does."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=position_ids.device,
                                             dtype=torch.int64).float() / head_dim))
    freqs = position_ids[..., None].float() * inv_freq  # (B, T, Dh/2)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B,heads,T,Dh) rotated by cos, sin (B,1,T,Dh); elementwise, so any set of heads at once."""
    return x * cos + rotate_half(x) * sin


def fuse_linears(linears: list[nn.Linear], layout: Callable[[torch.Tensor], torch.Tensor],
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One weight (sum of out, in) and bias for Linears that read the same input; each Linear's
    parameters become views of them (rows of the fused weight).

    Views, not copies: no second copy of the weights in memory, `state_dict()` keeps its names
    and values, and in-place updates of the parameters (`load_state_dict`, an optimizer step)
    reach the fused tensors. `layout(weight)` chooses the fused weight's strides (e.g.
    column-major); it must keep shape and values. Called again, it rebuilds from the current
    parameter values, so it is idempotent. A later `.to()` / `.half()` gives the parameters and
    the fused tensors separate storage (still equal values): fuse after moving the model.
    """
    with torch.no_grad():
        weight = layout(torch.cat([part.weight for part in linears]))
        biases = [part.bias for part in linears]
        if any(b is None for b in biases) and any(b is not None for b in biases):
            raise ValueError("cannot fuse Linears where only some have a bias")
        bias = None if biases[0] is None else torch.cat(biases)
        start = 0
        for part in linears:
            end = start + part.out_features
            part.weight.data = weight[start:end]
            if bias is not None:
                part.bias.data = bias[start:end]
            start = end
    return weight, bias


class Attention(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        d, bias = config.hidden_size, config.attention_bias or config.qkv_bias
        self.q_proj = nn.Linear(d, self.num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, d, bias=config.attention_bias)
        # Set by `fuse` for inference only; not part of the state dict (the q/k/v parameters are).
        self.register_buffer("qkv_weight", None, persistent=False)
        self.register_buffer("qkv_bias", None, persistent=False)

    def fuse(self, layout: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Inference: compute q, k and v with one matmul over the concatenated weights (one
        kernel call and one pass over the activations instead of three). See `fuse_linears`."""
        self.qkv_weight, self.qkv_bias = fuse_linears([self.q_proj, self.k_proj, self.v_proj], layout)

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B,T,D) -> q (B,H,T,Dh), k, v (B,H_kv,T,Dh), with rotary positions applied to q, k.

        The fused weights serve only when no gradient is recorded: gradients must reach the
        q/k/v parameters, which the fused path bypasses."""
        b, t, _ = x.shape
        h, h_kv = self.num_heads, self.num_kv_heads
        if self.qkv_weight is not None and not torch.is_grad_enabled():
            qkv = linear(x, self.qkv_weight, self.qkv_bias).view(b, t, h + 2 * h_kv, self.head_dim)
            qkv = qkv.transpose(1, 2)
            q, k = apply_rotary(qkv[:, :h + h_kv], cos, sin).split([h, h_kv], dim=1)
            return q, k, qkv[:, h + h_kv:]
        q = self.q_proj(x).view(b, t, h, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h_kv, self.head_dim).transpose(1, 2)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, cache: KVCache | None, layer: int,
                queries: torch.Tensor | None = None) -> torch.Tensor:
        """x (B,T,D) -> (B,T,D); with `queries` (B,K) positions into T: the outputs at those
        positions only, (B,K,D), keys and values still from (and cached for) all T."""
        b, t, _ = x.shape
        q, k, v = self.project(x, cos, sin)
        start = cache.length if cache is not None else 0
        if cache is not None:
            cache.keys[layer][:, :, start:start + t] = k
            cache.values[layer][:, :, start:start + t] = v
            k = cache.keys[layer][:, :, :start + t]
            v = cache.values[layer][:, :, :start + t]
        if queries is not None:
            q, mask = select_queries(q, mask, queries, start, k.shape[2])
            t = queries.shape[1]
        groups = self.num_heads // self.num_kv_heads
        if groups > 1:  # (B, H_kv, S, Dh) -> (B, H, S, Dh) without copying per group in the kernel
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             is_causal=mask is None and t > 1 and queries is None)
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)  # t may be 0
        return apply_linear(self.o_proj, out)


def query_positions(keep: torch.Tensor, select: bool = True,
                    ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """keep (B,T) bool -> queries (B,K) long, valid (B,K) bool, K the most kept in a row: each
    row's kept positions in ascending order, then filler positions (marked not valid), so that
    `states[valid]` lists the kept positions in the order of `full_states[keep]`. `select`
    False: (None, keep), the full pass (every position) indexed alike."""
    if not select:
        return None, keep
    k = int(keep.sum(1).max()) if keep.numel() else 0
    queries = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]
    return queries, keep.gather(1, queries)


def select_queries(q: torch.Tensor, mask: torch.Tensor | None, queries: torch.Tensor, past: int,
                   keys: int) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B,H,T,Dh) and its mask (B,1,T,S) or None (causal after `past` cached positions) cut
    to the query positions `queries` (B,K): (B,H,K,Dh) and a (B,1,K,S) boolean mask."""
    b, h, _, dh = q.shape
    q = q.gather(2, queries[:, None, :, None].expand(b, h, -1, dh))
    if mask is None:  # causal: query i (at past + i) sees keys 0 .. past + i
        seen = torch.arange(keys, device=q.device)[None, None, :] <= (queries + past)[..., None]
        return q, seen[:, None]
    rows = queries[:, None, :, None].expand(mask.shape[0], mask.shape[1], -1, mask.shape[3])
    return q, mask.gather(2, rows)


class MLP(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        d, i = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(d, i, bias=False)
        self.up_proj = nn.Linear(d, i, bias=False)
        self.down_proj = nn.Linear(i, d, bias=False)
        # Set by `fuse` for inference only; not part of the state dict.
        self.register_buffer("gate_up_weight", None, persistent=False)

    def fuse(self, layout: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Inference: gate and up projections as one matmul (see `fuse_linears`)."""
        self.gate_up_weight, _ = fuse_linears([self.gate_proj, self.up_proj], layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_weight is not None and not torch.is_grad_enabled():  # as in Attention
            gate, up = linear(x, self.gate_up_weight).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return apply_linear(self.down_proj, F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, cache: KVCache | None, layer: int,
                queries: torch.Tensor | None = None) -> torch.Tensor:
        """x (B,T,D) -> (B,T,D), or (B,K,D) at the positions `queries` (B,K) (see Attention)."""
        attended = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer, queries)
        if queries is not None:
            x = x.gather(1, queries[..., None].expand(-1, -1, x.shape[-1]))
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


def attention_bias(attention_mask: torch.Tensor, query_length: int) -> torch.Tensor:
    """Boolean SDPA mask (B,1,Tq,S) from a (B,S) padding mask of everything seen so far.

    Query i (the last `query_length` positions) sees key j when j <= i and key j is real. A
    padding query also sees itself, so no row is fully masked (a fully masked row gives NaN,
    which would leak into real rows through later layers' values).
    """
    total = attention_mask.shape[1]
    q_pos = torch.arange(total - query_length, total, device=attention_mask.device)[:, None]
    k_pos = torch.arange(total, device=attention_mask.device)[None, :]
    causal = k_pos <= q_pos  # (Tq, S)
    keep = causal[None] & attention_mask[:, None, :].bool()
    keep = keep | (k_pos == q_pos)[None]
    return keep[:, None]


def position_ids_from_mask(attention_mask: torch.Tensor, query_length: int) -> torch.Tensor:
    """Positions count real tokens only, so a left-padded row starts at 0 like an unpadded one."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp_min(0)[:, -query_length:]


class LanguageModel(nn.Module):
    """`LlamaForCausalLM`: the decoder plus `lm_head` (tied to the embeddings when configured)."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.gradient_checkpointing = False
        self.model = LlamaModel(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def output_weight(self) -> torch.Tensor:
        if self.config.tie_word_embeddings:
            return self.model.embed_tokens.weight
        return self.lm_head.weight

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: KVCache | None = None,
                logits_to_keep: int = 0) -> torch.Tensor:
        """inputs_embeds (B,T,D) -> logits (B,T',V), T' = T or the last `logits_to_keep`.

        `attention_mask` (B, past+T) covers the cached positions and the new ones; None means
        no padding. With a cache, the new keys/values are written at `cache.length` and the
        caller advances `cache.length` after the call.
        """
        b, t, _ = inputs_embeds.shape
        past = cache.length if cache is not None else 0
        if attention_mask is not None and attention_mask.dim() == 4:
            # A ready-made (B,1,T,S) boolean mask, e.g. block-diagonal for packed sequences.
            if position_ids is None:
                raise ValueError("a 4-D attention mask needs explicit position_ids")
            return self._run(inputs_embeds, attention_mask, position_ids, cache, logits_to_keep)
        padded = attention_mask is not None and not bool(attention_mask.all())
        if padded and position_ids is None:
            position_ids = position_ids_from_mask(attention_mask, t)
        mask = None  # None: plain causal attention (is_causal) or a single query seeing everything
        if padded or (past > 0 and t > 1):
            if attention_mask is None:
                attention_mask = torch.ones(b, past + t, dtype=torch.bool, device=inputs_embeds.device)
            mask = attention_bias(attention_mask, t)
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=inputs_embeds.device).expand(b, t)
        return self._run(inputs_embeds, mask, position_ids, cache, logits_to_keep)

    def hidden_states(self, inputs_embeds: torch.Tensor, mask: torch.Tensor | None,
                      position_ids: torch.Tensor, cache: KVCache | None = None,
                      queries: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder without `lm_head`: final normed hidden states (B,T,D). `mask` None means
        plain causal attention (a single query sees everything). Training uses this to apply
        `lm_head` only where a label is.

        `queries` (B,K), positions into T: the states at those positions only, (B,K,D). The last
        layer then computes its query, output projection and MLP at K positions instead of T
        (its keys and values, and every earlier layer, still need all T); the states are those
        of the full pass up to float summation order."""
        cos, sin = rotary_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta,
                                  inputs_embeds.dtype)
        x = inputs_embeds
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        last = len(self.model.layers) - 1
        for i, layer in enumerate(self.model.layers):
            selected = queries if i == last else None
            if checkpointing:  # recompute activations in backward: memory for compute
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, mask, cache, i, selected,
                                                      use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, cache, i, selected)
        return self.model.norm(x)

    def _run(self, inputs_embeds: torch.Tensor, mask: torch.Tensor | None,
             position_ids: torch.Tensor, cache: KVCache | None, logits_to_keep: int) -> torch.Tensor:
        x = self.hidden_states(inputs_embeds, mask, position_ids, cache)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        return linear(x, self.output_weight())  # decode: see llava15.model.linear
