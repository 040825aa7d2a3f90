"""Make tiny checkpoints in every official LLaVA layout, and the official model's outputs on them.

Run from the repository root with the official venv (llava-torch 1.2.2.post1, transformers 4.37.2,
peft 0.10.0):

    /work/official/venv/bin/python tests/golden/make_checkpoint_golden.py

Writes `tests/golden/checkpoints/`:
- `clip/`: a `CLIPVisionModel` (hidden 32, 3 layers, 4 heads, 28 px, patch 7) with a 28-px
  `CLIPImageProcessor`; every LLaVA config here names it as `mm_vision_tower: "../clip"`.
- `base_llm/`: a `LlamaForCausalLM` (vocab 512 from `tests/golden/tokenizer`, hidden 64, 2 layers,
  4 heads, 2 kv heads) with its tokenizer: the `model_base` of the projector-only and LoRA checkpoints.
- `llava-tiny-full/`: official full checkpoint (`model_type: "llava"` as in the released v1.5 files,
  GQA, mlp2x_gelu, patch features) saved by `save_pretrained` as two `pytorch_model-*.bin` shards plus
  index, with the CLIP weights under `model.vision_tower.vision_tower.*` and old-style
  `rotary_emb.inv_freq` buffers added (both must be ignored by a loader).
- `llava-tiny-mha-linear/`: official full checkpoint (`llava_llama`, MHA with attention bias,
  rope_theta 500000, `linear` projector, `cls_patch` features, select layer -1) as `model.safetensors`.
- `llava-tiny-projector/`: a stage-1 output (`config.json` + `mm_projector.bin`) over `base_llm`.
- `llava-tiny-lora/`: official LoRA output (r=8, alpha=16 over all LLM linears, non-zero B) written
  with the official `get_peft_state_maybe_zero_3` / `get_peft_state_non_lora_maybe_zero_3` helpers:
  `adapter_config.json`, `adapter_model.bin`, `non_lora_trainables.bin`, `config.json`; over `base_llm`.
- `outputs/<name>.safetensors`: `input_ids` (1 x T, one -200 sentinel), `pixel_values` (1,3,28,28),
  the official `forward(input_ids=..., images=...)` logits in float32 (1, T', 512) and the 32 greedy
  tokens of the official `generate(inputs, images=..., do_sample=False)`; each checkpoint is loaded
  through `llava.model.builder.load_pretrained_model` in float32.

All weights are random and exactly representable in float16, and are saved in float16 as the released
checkpoints are, so the float32 load equals the official float16 load upcast.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
OUT = HERE / "checkpoints"
TOKENIZER = HERE / "tokenizer"
PROMPT = "USER: <image>\nWhat is it? ASSISTANT:"  # short: the logits goldens grow with its length

LLAMA = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
             rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0,
             tie_word_embeddings=False)
MM = dict(mm_vision_tower="../clip", mm_hidden_size=32, mm_projector_type="mlp2x_gelu",
          mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_use_im_start_end=False,
          mm_use_im_patch_token=False, image_aspect_ratio="pad", use_mm_proj=True,
          tune_mm_mlp_adapter=False, freeze_mm_mlp_adapter=False)


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Random weights, exactly representable in float16, with activations of order one."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=gen)
        if p.dim() >= 2:
            value = noise / math.sqrt(p[0].numel())
        elif name.endswith("weight") and "norm" in name:
            value = 1 + 0.1 * noise
        else:
            value = 0.1 * noise
        with torch.no_grad():
            p.copy_(value.half().float())


def copy_tokenizer(directory: Path) -> None:
    for f in TOKENIZER.iterdir():
        shutil.copy(f, directory / f.name)


def make_clip() -> None:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=4, image_size=28, patch_size=7, projection_dim=16)
    model = CLIPVisionModel(cfg)
    randomize(model, seed=1)
    model.half().save_pretrained(OUT / "clip", safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(OUT / "clip")


def make_base_llm() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(**LLAMA))
    randomize(model, seed=2)
    model.half().save_pretrained(OUT / "base_llm", safe_serialization=True)
    copy_tokenizer(OUT / "base_llm")


def llava_model(seed: int, llama: dict, mm: dict, model_type: str):
    """An official `LlavaLlamaForCausalLM`, built in the checkpoint directory's parent so that
    the relative `mm_vision_tower` resolves (the official code resolves it against the cwd)."""
    from llava.model import LlavaConfig, LlavaLlamaForCausalLM

    config = LlavaConfig(**llama, **mm)
    model = LlavaLlamaForCausalLM(config)
    randomize(model, seed)
    model.config.model_type = model_type
    return model


def set_model_type(directory: Path, model_type: str) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config["model_type"] = model_type
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def make_full() -> None:
    directory = OUT / "llava-tiny-full"
    model = llava_model(3, LLAMA, MM, "llava")
    model.get_model().get_vision_tower().load_model()  # its weights land in the shards, as in some copies
    model.half().save_pretrained(directory, safe_serialization=False, max_shard_size="200KB")
    set_model_type(directory, "llava")  # the released v1.5 configs carry the older name
    # Older transformers saved the rotary buffers; a loader must ignore them.
    index = json.loads((directory / "pytorch_model.bin.index.json").read_text())
    for i in range(LLAMA["num_hidden_layers"]):
        key = f"model.layers.{i}.self_attn.rotary_emb.inv_freq"
        shard = index["weight_map"][f"model.layers.{i}.self_attn.q_proj.weight"]
        state = torch.load(directory / shard, weights_only=True)
        head_dim = LLAMA["hidden_size"] // LLAMA["num_attention_heads"]
        state[key] = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        torch.save(state, directory / shard)
        index["weight_map"][key] = shard
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")
    copy_tokenizer(directory)


def make_mha_linear() -> None:
    directory = OUT / "llava-tiny-mha-linear"
    llama = dict(LLAMA, num_key_value_heads=4, attention_bias=True, rope_theta=500000.0)
    mm = dict(MM, mm_projector_type="linear", mm_vision_select_feature="cls_patch",
              mm_vision_select_layer=-1, mm_patch_merge_type="flat", tokenizer_padding_side="right",
              tokenizer_model_max_length=2048)
    model = llava_model(4, llama, mm, "llava_llama")
    model.half().save_pretrained(directory, safe_serialization=True)
    copy_tokenizer(directory)


def make_projector_only() -> None:
    directory = OUT / "llava-tiny-projector"
    model = llava_model(5, LLAMA, dict(MM, tune_mm_mlp_adapter=True, image_aspect_ratio="square"),
                        "llava_llama")
    model.config.save_pretrained(directory)
    # The official stage-1 save keeps the parameters whose names contain `mm_projector`.
    weights = {k: v.half() for k, v in model.state_dict().items() if "mm_projector" in k}
    torch.save(weights, directory / "mm_projector.bin")


def install_deepspeed_stub() -> None:
    """`maybe_zero_3` imports deepspeed; without ZeRO parameters these two names are all it needs."""
    zero = types.ModuleType("deepspeed.zero")
    status = types.SimpleNamespace(NOT_AVAILABLE="NOT_AVAILABLE")
    modules = {"deepspeed": types.ModuleType("deepspeed"),
               "deepspeed.runtime": types.ModuleType("deepspeed.runtime"),
               "deepspeed.runtime.zero": types.ModuleType("deepspeed.runtime.zero"),
               "deepspeed.runtime.zero.partition_parameters":
                   types.ModuleType("deepspeed.runtime.zero.partition_parameters")}
    modules["deepspeed"].zero = zero
    modules["deepspeed.runtime.zero.partition_parameters"].ZeroParamStatus = status
    sys.modules.update(modules)


def make_lora() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from llava.train.train import (find_all_linear_names, get_peft_state_maybe_zero_3,
                                   get_peft_state_non_lora_maybe_zero_3)

    install_deepspeed_stub()  # after importing train.py: transformers.trainer probes the real one

    directory = OUT / "llava-tiny-lora"
    model = llava_model(6, LLAMA, MM, "llava_llama")
    base = LlamaForCausalLM.from_pretrained(OUT / "base_llm", torch_dtype=torch.float32)
    model.load_state_dict(base.state_dict(), strict=False)  # LoRA trains over the base LLM
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=find_all_linear_names(model),
                      lora_dropout=0.05, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    gen = torch.Generator().manual_seed(7)
    for name, p in model.named_parameters():
        if "lora_" in name:  # a trained adapter: B is no longer zero
            with torch.no_grad():
                p.copy_((torch.randn(p.shape, generator=gen) * 0.05).half().float())
        p.requires_grad_("lora_" in name or "mm_projector" in name)
    state = get_peft_state_maybe_zero_3(model.named_parameters(), "none")
    non_lora = get_peft_state_non_lora_maybe_zero_3(model.named_parameters())
    model.config.save_pretrained(directory)
    model.save_pretrained(directory, state_dict={k: v.half() for k, v in state.items()},
                          safe_serialization=False)
    (directory / "README.md").unlink()  # peft's model-card template, not part of the official layout
    torch.save({k: v.half() for k, v in non_lora.items()}, directory / "non_lora_trainables.bin")


def load_official(name: str, model_base: str | None):
    """`load_pretrained_model` in float32 on the CPU (its float16 reads as float32)."""
    import llava.model.builder as builder

    class Float32Torch:
        def __getattr__(self, attr):
            return torch.float32 if attr == "float16" else getattr(torch, attr)

    builder.torch = Float32Torch()
    cwd = os.getcwd()
    os.chdir(OUT / name)  # `mm_vision_tower: "../clip"` resolves against the cwd, officially
    try:
        tokenizer, model, processor, _ = builder.load_pretrained_model(
            str(OUT / name), model_base and str(OUT / model_base), name, device="cpu", device_map="cpu")
    finally:
        os.chdir(cwd)
    return tokenizer, model.float().eval()


def record(name: str, model_base: str | None, seed: int) -> dict:
    from llava.constants import IMAGE_TOKEN_INDEX
    from llava.mm_utils import tokenizer_image_token

    tokenizer, model = load_official(name, model_base)
    input_ids = tokenizer_image_token(PROMPT, tokenizer, IMAGE_TOKEN_INDEX, return_tensors="pt")[None]
    pixel_values = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits = model(input_ids=input_ids, images=pixel_values).logits.float()
        generated = model.generate(input_ids, images=pixel_values, do_sample=False, max_new_tokens=32,
                                   use_cache=True)
    # transformers 4.37 with inputs_embeds: a BOS placeholder, then the new tokens
    assert generated[0, 0].item() == tokenizer.bos_token_id, generated
    new_tokens = generated[:, 1:]
    (OUT / "outputs").mkdir(exist_ok=True)
    save_file({"input_ids": input_ids.contiguous(), "pixel_values": pixel_values.contiguous(),
               "logits": logits.contiguous(), "generated": new_tokens.contiguous()},
              str(OUT / "outputs" / f"{name}.safetensors"))
    return {"model_base": model_base, "input_length": input_ids.shape[1], "logits_shape": list(logits.shape),
            "generated": new_tokens[0].tolist()}


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    make_clip()
    os.chdir(OUT / "clip")  # so that every config's `mm_vision_tower: "../clip"` resolves
    make_base_llm()
    make_full()
    make_mha_linear()
    make_projector_only()
    make_lora()
    manifest = {
        "llava-tiny-full": record("llava-tiny-full", None, 11),
        "llava-tiny-mha-linear": record("llava-tiny-mha-linear", None, 12),
        "llava-tiny-projector": record("llava-tiny-projector", "base_llm", 13),
        "llava-tiny-lora": record("llava-tiny-lora", "base_llm", 14),
    }
    (OUT / "outputs" / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
