"""The engine and `predict` on a tiny random model with the tiny real tokenizer.

Prompts follow the official template; batches give the answers of batch 1; streaming joins to
the full answer; stop strings cut; the answers file has the official shape; bad question files
and images give clear errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from llava15.config import LlavaConfig, TextConfig, VisionConfig
from llava15.data.image import ImageError, ImageProcessorConfig
from llava15.data.tokenizer import load_tokenizer, tokenizer_image_token
from llava15.infer.engine import Engine, Request, model_name_from_path
from llava15.infer.generate import SamplingParams
from llava15.infer.predict import QuestionFileError, predict, read_questions
from random_llava import random_llava

TOKENIZER = Path(__file__).parent / "golden" / "tokenizer"


def tiny_engine(conv_mode: str = "vicuna_v1", **config_changes) -> Engine:
    vision = VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, image_size=28, patch_size=7)
    text = TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    model = random_llava(LlavaConfig(vision=vision, text=text, **config_changes))
    image_config = ImageProcessorConfig(shortest_edge=28, crop_size=(28, 28))
    return Engine(model, load_tokenizer(TOKENIZER), image_config, conv_mode, model_id="tiny")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return tiny_engine()


def image(seed: int, size=(40, 30)) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def test_encode_is_official_chunking_with_expanded_images(engine):
    prompt = engine.build_prompt([("user", "<image>\nWhat colour is it?")])
    assert prompt.endswith("USER: <image>\nWhat colour is it? ASSISTANT:")
    official = tokenizer_image_token(prompt, engine.tokenizer)
    ids = engine.encode(prompt)
    n = engine.config.num_image_tokens
    at = official.index(-200)
    assert ids[:at] == official[:at] and ids[at + n:] == official[at + 1:]
    assert ids[at:at + n] == [-200] * n


def test_batch_gives_the_answers_of_batch_one(engine):
    params = SamplingParams(max_new_tokens=12)
    requests = [Request(engine.build_prompt([("user", "<image>\n" + q)]), [image(i)], params)
                for i, q in enumerate(["What is this?", "How many red circles are there?",
                                       "Is there a square?"])]
    requests.append(Request(engine.build_prompt([("user", "Say hello.")]), [], params))
    batched = engine.generate(requests)
    alone = [engine.generate([r])[0] for r in requests]
    assert batched == alone


def test_a_repeated_image_is_preprocessed_once_and_answers_as_alone(engine):
    a, b = image(1), image(2)
    assert engine.load_images([a])[0] is a  # RGB images pass as they are
    pixels = engine.pixel_values([a, b, a])
    assert torch.equal(pixels, torch.cat([engine.pixel_values([x]) for x in (a, b, a)]))
    params = SamplingParams(max_new_tokens=12)
    questions = ["What is this?", "Is there a square?", "What is this?", "How many?"]
    requests = [Request(engine.build_prompt([("user", "<image>\n" + q)]), [x], params)
                for q, x in zip(questions, [a, a, b, a])]
    assert engine.generate(requests) == [engine.generate([r])[0] for r in requests]


def test_stream_joins_to_the_answer_and_stop_strings_cut(engine):
    prompt = engine.build_prompt([("user", "<image>\nDescribe the image.")])
    params = SamplingParams(max_new_tokens=16)
    full = engine.generate([Request(prompt, [image(5)], params)])[0]
    streamed = "".join(engine.stream(Request(prompt, [image(5)], params)))
    assert streamed.strip() == full
    assert len(full) > 4
    stop = full[2:4]
    cut = SamplingParams(max_new_tokens=16, stop=(stop,))
    answer = engine.generate([Request(prompt, [image(5)], cut)])[0]
    assert answer == full[:full.index(stop)].strip()
    assert "".join(engine.stream(Request(prompt, [image(5)], cut))).strip() == answer


def test_image_count_mismatch_is_a_clear_error(engine):
    with pytest.raises(ValueError, match="names 1 image"):
        engine.generate([Request("<image>\nhi", [], SamplingParams(max_new_tokens=2))])


def test_predict_writes_official_answer_lines(engine, tmp_path):
    image(1).save(tmp_path / "a.png")
    image(2).save(tmp_path / "b.png")
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"question_id": 7, "image": "a.png", "text": "What is it?\nAnswer the question using a single word or phrase.", "category": "x"},
        {"question_id": "q2", "image": "b.png", "text": "Colour?"},
        {"question_id": 9, "text": "A text-only question."}]) + "\n")
    params = SamplingParams(max_new_tokens=6)
    one, four = tmp_path / "a1.jsonl", tmp_path / "a4.jsonl"
    predict(engine, read_questions(questions), tmp_path, one, params, batch_size=1)
    predict(engine, read_questions(questions), tmp_path, four, params, batch_size=4)
    lines = [json.loads(x) for x in one.read_text().splitlines()]
    assert [x["question_id"] for x in lines] == [7, "q2", 9]
    assert set(lines[0]) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
    assert lines[0]["prompt"].startswith("What is it?") and lines[0]["model_id"] == "tiny"
    assert [x["text"] for x in lines] == [json.loads(x)["text"] for x in four.read_text().splitlines()]


def test_bad_question_files_and_images(engine, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1, "text": "ok"}\n{"question_id": 2, "text": \n')
    with pytest.raises(QuestionFileError, match=r"bad.jsonl:2"):
        read_questions(bad)
    missing_key = tmp_path / "nokey.jsonl"
    missing_key.write_text('{"question_id": 1}\n')
    with pytest.raises(QuestionFileError, match=r"nokey.jsonl:1: missing key\(s\) text"):
        read_questions(missing_key)
    q = tmp_path / "q.jsonl"
    q.write_text('{"question_id": 1, "image": "gone.png", "text": "hi"}\n'
                 '{"question_id": 2, "text": "hello"}\n')
    params = SamplingParams(max_new_tokens=2)
    with pytest.raises(ImageError, match="gone.png"):
        predict(engine, read_questions(q), tmp_path, tmp_path / "a.jsonl", params)
    summary = predict(engine, read_questions(q), tmp_path, tmp_path / "a.jsonl", params,
                      skip_bad_images=True)
    assert summary.answered == 1 and summary.skipped[0]["question_id"] == 1


def test_anyres_engine_lays_out_tokens_by_image_size():
    engine = tiny_engine(image_aspect_ratio="anyres", image_grid_pinpoints=((56, 28), (28, 56), (56, 56)),
                         mm_patch_merge_type="spatial_unpad")
    wide, tall = image(1, (60, 25)), image(2, (20, 50))
    prompt = engine.build_prompt([("user", "<image>\nWhat is it?")])
    counts = engine.image_token_counts([wide.size, tall.size])
    assert counts[0] != counts[1]
    for img, count in zip((wide, tall), counts):
        assert engine.encode(prompt, [img.size]).count(-200) == count
    params = SamplingParams(max_new_tokens=5)
    requests = [Request(prompt, [wide], params), Request(prompt, [tall], params)]
    assert engine.generate(requests) == [engine.generate([r])[0] for r in requests]


def test_model_name_from_path():
    assert model_name_from_path("/ckpt/llava-v1.5-7b/") == "llava-v1.5-7b"
    assert model_name_from_path("runs/llava-lora/checkpoint-500") == "llava-lora_checkpoint-500"


def test_image_cost_grows_with_the_anyres_grid(engine):
    flat = engine.image_cost((64, 48))
    assert flat["image_tokens"] == engine.config.num_image_tokens and flat["views"] == 1
    anyres = tiny_engine(image_aspect_ratio="anyres", image_grid_pinpoints=((56, 28), (28, 56), (56, 56)),
                         mm_patch_merge_type="spatial_unpad")
    wide = anyres.image_cost((120, 50))
    assert wide["views"] == 3 and wide["image_tokens"] > anyres.config.num_image_tokens
    assert wide["encode_ms"] > 0  # measured: three views cannot encode in no time


def test_predict_batches_by_image_and_writes_in_question_order(engine, tmp_path):
    """Questions alternate between two images, one text-only and one with a missing image
    (skipped): batches of 2 take one image each, lines come out in question order, and the
    answers equal batch 1's."""
    from llava15.infer.order import by_image

    image(1).save(tmp_path / "a.png")
    image(2).save(tmp_path / "b.png")
    rows = [{"question_id": i, "image": "ab"[i % 2] + ".png", "text": f"Question {i}?"} for i in range(6)]
    rows.insert(3, {"question_id": "text", "text": "No image here."})
    rows.insert(1, {"question_id": "gone", "image": "gone.png", "text": "Lost?"})
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    asked = read_questions(questions)
    assert by_image(asked, lambda q: q.image) == [0, 3, 6, 1, 2, 5, 7, 4]  # a, gone, b, text
    images_per_call: list[int] = []
    real_generate = engine.generate

    def spy(requests):
        images_per_call.append(len({id(im) for r in requests for im in r.images}))
        return real_generate(requests)

    params = SamplingParams(max_new_tokens=5)
    one, two = tmp_path / "a1.jsonl", tmp_path / "a2.jsonl"
    predict(engine, asked, tmp_path, one, params, batch_size=1, skip_bad_images=True)
    engine.generate = spy
    try:
        summary = predict(engine, asked, tmp_path, two, params, batch_size=2, skip_bad_images=True)
    finally:
        engine.generate = real_generate
    lines = [json.loads(x) for x in two.read_text().splitlines()]
    assert [x["question_id"] for x in lines] == [r["question_id"] for r in rows if r["question_id"] != "gone"]
    assert [x["text"] for x in lines] == [json.loads(x)["text"] for x in one.read_text().splitlines()]
    assert summary.answered == 7 and [s["question_id"] for s in summary.skipped] == ["gone"]
    assert max(images_per_call) == 1  # each batch of two asks about one image


def test_one_chunking_for_predict_and_eval(tmp_path, capsys):
    """`--num-chunks/--chunk-idx` of predict and torchrun's shards of eval are the official
    `get_chunk`; a chunk index out of range is a one-line error, before any model is loaded."""
    from llava15.cli import main
    from llava15.infer.question import chunk

    assert [chunk(list(range(5)), 2, i) for i in (0, 1)] == [[0, 1, 2], [3, 4]]
    assert chunk(list(range(5)), 3, 2) == [4] and chunk([], 2, 1) == []
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question_id": 1, "text": "hi"}\n')
    assert main(["predict", "--model", str(tmp_path / "no-model"), "--question-file", str(questions),
                 "--answers-file", str(tmp_path / "a.jsonl"), "--num-chunks", "2", "--chunk-idx", "5"]) == 2
    assert "error: chunk index 5 is outside 0..1" in capsys.readouterr().err
