"""Golden samples from the official `LazySupervisedDataset` (llava/train/train.py).

Run with the official-code venv (llava-torch 1.2.2.post1, transformers 4.37.2):
    /work/official/venv/bin/python tests/golden/make_dataset_golden.py
Writes tests/golden/dataset/: small PNG images, records.json (official format: image and
text-only records, `<image>` after the text, in a later turn, a long text-only chat) and
samples.json: per template (`plain`, `v1`) and image_aspect_ratio (`square`, `pad`) the official
input_ids (one -200 per image), labels and pixel statistics, with the tiny tokenizer of
tests/golden/tokenizer and a 28-px CLIP processor, model_max_length 64.
"""

import json
from pathlib import Path

import torch
import transformers
from PIL import Image

import llava.conversation as conversation_lib
from llava.train import train as official

HERE = Path(__file__).parent
OUT = HERE / "dataset"
MAX_LENGTH = 64


def write_inputs() -> list[dict]:
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    for name, size, color in (("wide.png", (40, 22), (200, 40, 40)), ("tall.png", (18, 33), (30, 160, 60)),
                              ("square.png", (30, 30), (20, 40, 210))):
        image = Image.new("RGB", size, (245, 245, 245))
        image.paste(color, (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
        image.save(OUT / "images" / name)
    records = [
        {"id": "a", "image": "wide.png", "conversations": [
            {"from": "human", "value": "Describe the image briefly.\n<image>"},
            {"from": "gpt", "value": "a red square on white"}]},
        {"id": "b", "image": "tall.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat color is it?"}, {"from": "gpt", "value": "Green."},
            {"from": "human", "value": "And the shape?"}, {"from": "gpt", "value": "A small square."}]},
        {"id": "c", "conversations": [
            {"from": "human", "value": "What is 3 plus 4?"}, {"from": "gpt", "value": "3 plus 4 is 7."}]},
        {"id": "d", "conversations": [  # longer than MAX_LENGTH: the official tokenizer truncates it
            {"from": "human", "value": "Tell me a long story about " + "a red square and a blue circle " * 6},
            {"from": "gpt", "value": "Once upon a time " + "there was a shape that moved. " * 6}]},
        {"id": "e", "image": "square.png", "conversations": [
            {"from": "human", "value": "Look at this: <image> what is in the middle?"},
            {"from": "gpt", "value": "A blue square."}]},
    ]
    (OUT / "records.json").write_text(json.dumps(records, indent=1))
    return records


def main() -> None:
    records = write_inputs()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(HERE / "tokenizer"), use_fast=False,
                                                           model_max_length=MAX_LENGTH, padding_side="right")
    tokenizer.pad_token = tokenizer.unk_token  # as train.py does for v1 (and plain)
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    out = {"max_length": MAX_LENGTH, "cases": []}
    for version, aspect in (("plain", "square"), ("v1", "pad")):
        conversation_lib.default_conversation = conversation_lib.conv_templates["vicuna_v1" if version == "v1" else "plain"]
        args = official.DataArguments(data_path=str(OUT / "records.json"), is_multimodal=True,
                                      image_folder=str(OUT / "images"), image_aspect_ratio=aspect)
        args.image_processor = processor
        args.mm_use_im_start_end = False
        dataset = official.LazySupervisedDataset(str(OUT / "records.json"), tokenizer, args)
        for i, record in enumerate(records):
            if version == "plain" and ("image" not in record or len(record["conversations"]) != 2):
                continue  # preprocess_plain takes one image and one caption
            item = dataset[i]
            pixels = item["image"]
            out["cases"].append({"template": "plain" if version == "plain" else "vicuna_v1", "aspect": aspect,
                                 "index": i, "input_ids": item["input_ids"].tolist(), "labels": item["labels"].tolist(),
                                 "has_image": "image" in record, "pixel_sum": float(pixels.double().sum()),
                                 "pixel_sq": float(pixels.double().pow(2).sum()),
                                 "pixel_first": pixels.flatten()[:16].tolist()})
    (OUT / "samples.json").write_text(json.dumps(out))
    print(f"wrote {len(out['cases'])} cases to {OUT}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
