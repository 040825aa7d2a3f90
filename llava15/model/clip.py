"""The CLIP ViT vision tower: patch embedding, pre-LN transformer blocks, quick-GELU MLPs.

Parameter names match `transformers.CLIPVisionModel` (`vision_model.embeddings.patch_embedding`,
`vision_model.encoder.layers.{i}.self_attn.q_proj`, ...), so HF CLIP state dicts load unchanged.
LLaVA reads the hidden states of one layer (`mm_vision_select_layer`, -2 for v1.5): only the
layers up to that one are run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llava15.config import VisionConfig
from llava15.model.linear import apply_linear


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {
    "quick_gelu": quick_gelu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


class CLIPEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.use_cls_token = config.use_cls_token
        if config.use_cls_token:
            self.class_embedding = nn.Parameter(torch.zeros(config.hidden_size))
        self.patch_embedding = nn.Conv2d(config.num_channels, config.hidden_size, config.patch_size,
                                         stride=config.patch_size, bias=not config.use_cls_token)
        num_positions = config.num_patches + int(config.use_cls_token)
        self.position_embedding = nn.Embedding(num_positions, config.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        weight = self.patch_embedding.weight
        patches = self.patch_embedding(pixel_values.to(weight.dtype))  # (B, D, h, w)
        x = patches.flatten(2).transpose(1, 2)  # (B, h*w, D)
        if self.use_cls_token:
            cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1)  # (B, 1+h*w, D)
        return x + self.position_embedding.weight.to(x.dtype)


class CLIPAttention(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.num_heads, -1).transpose(1, 2)  # (B, H, T, Dh)
        q, k, v = (apply_linear(proj, x) for proj in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return apply_linear(self.out_proj, out.transpose(1, 2).reshape(b, t, d))


class CLIPMLP(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.act = ACTIVATIONS[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_linear(self.fc2, self.act(apply_linear(self.fc1, x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.self_attn = CLIPAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers))


class CLIPVisionTransformer(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.embeddings = CLIPEmbeddings(config)
        # HF spells it "pre_layrnorm"; SigLIP-style towers have none.
        self.pre_layrnorm = (nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
                             if config.use_cls_token else nn.Identity())
        self.encoder = CLIPEncoder(config)
        # Kept for checkpoint compatibility; LLaVA never uses the last layer's normed output.
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class VisionTower(nn.Module):
    """Returns `hidden_states[select_layer]` of HF CLIP: index 0 is the embedding output after
    `pre_layrnorm`, index k the output of encoder layer k, negative indices count from the end.
    """

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_model = CLIPVisionTransformer(config)

    def forward(self, pixel_values: torch.Tensor, select_layer: int = -2) -> torch.Tensor:
        """pixel_values (N,3,H,W) -> hidden states (N, T, D) of `select_layer` (T includes CLS)."""
        n_layers = self.config.num_hidden_layers
        index = select_layer if select_layer >= 0 else n_layers + 1 + select_layer
        if not 0 <= index <= n_layers:
            raise ValueError(f"mm_vision_select_layer {select_layer} is out of range for a tower "
                             f"with {n_layers} layers")
        vm = self.vision_model
        x = vm.pre_layrnorm(vm.embeddings(pixel_values))
        for layer in vm.encoder.layers[:index]:
            x = layer(x)
        return x
