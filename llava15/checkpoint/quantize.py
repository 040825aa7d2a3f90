"""`--load-8bit` / `--load-4bit`: the language model's decoder linears quantized while loading.

Only the linears inside the decoder layers change: the vision tower, the projector, the
embeddings and `lm_head` keep their dtype, as in the official builder (transformers' bitsandbytes
integration leaves `lm_head` alone, and the vision tower is loaded apart from the quantized LLM).
- CPU: `llava15.model.int8.Int8Linear` (int8 weights, one float32 scale per output row), filled
  tensor by tensor by the loader, so no float copy of the model exists.
- CUDA: bitsandbytes' `Linear8bitLt` (LLM.int8 with the outlier threshold 6.0 that transformers
  uses by default) or `Linear4bit` (nf4, double quantization, float16 compute), as
  `BitsAndBytesConfig` in the official builder. The model is read onto the CPU in float16 and
  each linear is quantized as it moves to the GPU.
"""

from __future__ import annotations

from torch import nn

from llava15.checkpoint.placement import Placement
from llava15.model.int8 import Int8Linear
from llava15.model.llama import DecoderLayer
from llava15.model.llava import Llava

LLM_INT8_THRESHOLD = 6.0  # transformers' BitsAndBytesConfig default, which the official builder keeps


def decoder_linears(model: Llava) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent module, attribute name, linear) for every nn.Linear inside a decoder layer."""
    found = []
    for layer in model.language_model.model.layers:
        assert isinstance(layer, DecoderLayer)
        for parent in layer.modules():
            for name, child in parent.named_children():
                if type(child) is nn.Linear:
                    found.append((parent, name, child))
    return found


def with_int8_linears(model: Llava) -> dict[str, str]:
    """Replace every decoder linear of `model` (on any device, meta included) by an empty
    `Int8Linear` of its shape; return {weight key: its scale key} in the state dict."""
    names = {id(module): name for name, module in model.named_modules()}
    replaced = {}
    for parent, attr, linear in decoder_linears(model):
        prefix = f"{names[id(parent)]}.{attr}"
        setattr(parent, attr, Int8Linear.like(linear))
        replaced[f"{prefix}.weight"] = f"{prefix}.weight_scale"
    return replaced


def quantize_bitsandbytes(model: Llava, placement: Placement) -> None:
    """Quantize the decoder linears of a CPU float16 `model` onto `placement.device` with
    bitsandbytes, then move the rest of the model there."""
    import bitsandbytes as bnb

    device = placement.device
    for parent, attr, linear in decoder_linears(model):
        bias = linear.bias is not None
        if placement.quantization == "int8":
            new = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=bias,
                                      has_fp16_weights=False, threshold=LLM_INT8_THRESHOLD)
            new.weight = bnb.nn.Int8Params(linear.weight.data, requires_grad=False,
                                           has_fp16_weights=False)
        else:
            new = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=bias,
                                    compute_dtype=placement.dtype, compress_statistics=True,
                                    quant_type="nf4")
            new.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False,
                                           compress_statistics=True, quant_type="nf4")
        if bias:
            new.bias = nn.Parameter(linear.bias.data, requires_grad=False)
        setattr(parent, attr, new.to(device))  # the move to the GPU quantizes
    model.to(device)


def quantize_int8(model: Llava) -> Llava:
    """Quantize a float model's decoder linears in place to CPU `Int8Linear`s (what
    `--load-8bit` gives at load time, for a model already in memory); returns the model."""
    for parent, attr, linear in decoder_linears(model):
        quantized = Int8Linear.like(linear)
        quantized.quantize_from(linear.weight.detach())
        if linear.bias is not None:
            quantized.bias.data.copy_(linear.bias.detach())
        setattr(parent, attr, quantized)
    return model
