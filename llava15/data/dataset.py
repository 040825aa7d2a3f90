"""The official LLaVA training data: records, lazy samples, right-padded batches.

Records are `{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}...]}` in a .json
list (558K pretrain / 665K mix) or a .jsonl file; text-only records mix freely with image ones.
Everything is checked when the file is read, so a malformed record stops the run before training
with its index and a reason. Images are loaded lazily in `__getitem__` (DataLoader workers), as
the official `LazySupervisedDataset` does (docs/official-behaviour.md, 'Training dataset').

AnyRes / HD models (`image_aspect_ratio="anyres"`) follow LLaVA-NeXT's `LazySupervisedDataset`:
a sample holds its image's stacked views (global view first, then the grid's tiles, from
`process_anyres_image`) and the image's (width, height); its `<image>` becomes as many positions
as that image's merged features (`image_token_count`, the function the inference engine uses),
so images of different aspect ratios take different numbers of positions. `collate` keeps the
views as a list of per-image tensors beside `image_sizes`, as the official collator does.

A sample whose image is missing or corrupt, or whose image would be cut by `model_max_length`,
is returned as a `Sample` with `skipped` set (counted by the loop) unless `strict`, which raises
naming the record. A sample whose labels are all masked (truncation, or the official
"tokenization mismatch" rule) is dropped in `collate` and counted, so it never trains with a
silent zero loss.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from llava15.config import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava15.data.anyres import process_anyres_image
from llava15.data.conversation import get_template
from llava15.data.image import ImageError, ImageProcessorConfig, load_image, process_images
from llava15.data.labels import encode_conversation
from llava15.data.tokenizer import expand_image_tokens

ROLES = ("human", "gpt")
Size = tuple[int, int]  # (width, height), as PIL's `.size`
ImageTokenCount = Callable[[Size], int]  # an image's prompt positions from its size


class DataFileError(ValueError):
    """A training data file that is missing or malformed; the message names the file (and line)."""


def load_records(path: str | Path) -> list[dict]:
    """Read and check an official LLaVA data file (.json list or .jsonl)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        records = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataFileError(f"{path}: line {line_no} is not JSON: {e}") from None
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFileError(f"{path}: line {e.lineno} column {e.colno} is not JSON: {e.msg}") from None
        if not isinstance(records, list):
            raise DataFileError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    for i, record in enumerate(records):
        if reason := record_problem(record):
            rid = record.get("id") if isinstance(record, dict) else None
            raise DataFileError(f"{path}: record {i} (id {rid!r}): {reason}")
    return records


def record_problem(record) -> str:
    """Why a record is malformed, or '' when it is fine."""
    if not isinstance(record, dict):
        return f"a record must be an object, got {type(record).__name__}"
    if "image" in record and not isinstance(record["image"], str):
        return f"'image' must be a relative path string, got {type(record['image']).__name__}"
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        return "'conversations' must be a non-empty list"
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in ROLES or not isinstance(turn.get("value"), str):
            return f"conversations[{k}] must be {{'from': 'human'|'gpt', 'value': str}}, got {turn!r:.80}"
    return ""


def modality_length(record: dict) -> int:
    """Official `modality_lengths`: whitespace words of all turns, negative for text-only records."""
    words = sum(len(turn["value"].split()) for turn in record["conversations"])
    return words if "image" in record else -words


@dataclass
class Sample:
    index: int
    input_ids: torch.Tensor  # (T,) every image expanded to its token positions
    labels: torch.Tensor  # (T,) IGNORE_INDEX where no loss is taken
    pixel_values: torch.Tensor | None = None  # (3,H,W), AnyRes (1+tiles,3,S,S); None: text only
    skipped: str = ""  # why the record could not be used ('' when it is fine)
    mismatch: bool = False  # the official tokenization-mismatch rule masked every label
    image_size: Size | None = None  # (width, height) of an AnyRes sample's image

    @property
    def num_targets(self) -> int:
        """Tokens that carry loss: a label at position 0 is never predicted (shifted loss)."""
        return int((self.labels[1:] != IGNORE_INDEX).sum())


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B,T)
    labels: torch.Tensor  # (B,T)
    attention_mask: torch.Tensor  # (B,T) right padding, or (B,1,T,T) bool for packed rows
    position_ids: torch.Tensor | None = None  # (B,T) with packed rows
    # images in token order: (N,3,H,W), or for AnyRes a list of per-image (1+tiles_i,3,S,S)
    pixel_values: torch.Tensor | list[torch.Tensor] | None = None
    indices: list[int] = field(default_factory=list)  # dataset indices trained on
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)
    fully_masked: list[int] = field(default_factory=list)
    num_tokens: int = 0  # real (non-padding) tokens
    mismatched: int = 0  # of fully_masked: by the official tokenization-mismatch rule
    image_sizes: list[Size] | None = None  # AnyRes: (width, height) of each image, in token order

    @property
    def num_targets(self) -> int:
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    def to(self, device: torch.device | str) -> "Batch":
        """The tensors on `device` (AnyRes views one by one); the bookkeeping is shared."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        pixel_values = ([move(v) for v in self.pixel_values] if isinstance(self.pixel_values, list)
                        else move(self.pixel_values))
        return dataclasses.replace(self, input_ids=move(self.input_ids), labels=move(self.labels),
                                   attention_mask=move(self.attention_mask),
                                   position_ids=move(self.position_ids), pixel_values=pixel_values)


def usable_samples(samples: list[Sample]) -> tuple[list[Sample], Batch]:
    """Trainable samples, and an empty Batch that records the skipped and fully masked ones."""
    masked = [s for s in samples if not s.skipped and s.num_targets == 0]
    record = Batch(torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1, dtype=torch.long),
                   torch.zeros(0, 1, dtype=torch.bool), skipped=[(s.index, s.skipped) for s in samples if s.skipped],
                   fully_masked=[s.index for s in masked], mismatched=sum(s.mismatch for s in masked))
    return [s for s in samples if not s.skipped and s.num_targets > 0], record


def batch_images(samples: list[Sample]) -> tuple[torch.Tensor | list[torch.Tensor] | None, list[Size] | None]:
    """The images of `samples` in order: one-view images stacked (N,3,H,W); AnyRes views kept as a
    list of per-image tensors (their tile counts differ) with the images' sizes (official collator)."""
    images = [s for s in samples if s.pixel_values is not None]
    if not images:
        return None, None
    anyres = [s.image_size is not None for s in images]
    if all(anyres):
        return [s.pixel_values for s in images], [s.image_size for s in images]
    if any(anyres):
        raise ValueError("a batch mixes AnyRes samples (with an image size) and one-view samples")
    return torch.stack([s.pixel_values for s in images]), None


def collate(samples: list[Sample], pad_token_id: int = 0) -> Batch:
    """Right-pad to the longest sample (the official collator; padding side right in training)."""
    kept, record = usable_samples(samples)
    length = max((len(s.input_ids) for s in kept), default=1)
    input_ids = torch.full((len(kept), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(kept), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(kept), length), dtype=torch.bool)
    for row, s in enumerate(kept):
        n = len(s.input_ids)
        input_ids[row, :n], labels[row, :n], attention_mask[row, :n] = s.input_ids, s.labels, True
    pixel_values, image_sizes = batch_images(kept)
    return dataclasses.replace(record, input_ids=input_ids, labels=labels, attention_mask=attention_mask,
                               pixel_values=pixel_values, image_sizes=image_sizes,
                               indices=[s.index for s in kept], num_tokens=int(attention_mask.sum()))


class LazySupervisedDataset(Dataset):
    """Official records -> `Sample`s: image loading, `<image>` handling, labels, truncation.

    One-view models expand each image to `num_image_tokens` positions. With
    `image_aspect_ratio="anyres"` the image is tiled over `image_grid_pinpoints` and expanded to
    `image_token_count(image.size)` positions; both are then required (the model's own pinpoints and
    count, so that the prompt layout matches what the model's merge returns).
    """

    def __init__(self, records: list[dict], *, tokenizer, template: str, image_folder: str | Path,
                 image_config: ImageProcessorConfig, image_aspect_ratio: str, model_max_length: int,
                 image_token_index: int, num_image_tokens: int,
                 image_grid_pinpoints: tuple[Size, ...] = (), image_token_count: ImageTokenCount | None = None,
                 strict: bool = False, cache_text: bool = False) -> None:
        if image_aspect_ratio == "anyres" and (not image_grid_pinpoints or image_token_count is None):
            raise ValueError("image_aspect_ratio='anyres' needs image_grid_pinpoints and image_token_count")
        self.records = records
        self.tokenizer = tokenizer
        self.template = get_template(template)
        self.image_folder = Path(image_folder)
        self.image_config = image_config
        self.image_aspect_ratio = image_aspect_ratio
        self.model_max_length = model_max_length
        self.image_token_index = image_token_index
        self.num_image_tokens = num_image_tokens
        self.image_grid_pinpoints = list(image_grid_pinpoints)
        self.image_token_count = image_token_count
        self.strict = strict
        # index -> ((has image, image positions), `_text` result): a record's tokens are the same
        # in every epoch. Per process: with DataLoader workers each fills its own copy (and loses
        # it when the workers end with the epoch), so it pays off with num_workers=0.
        self.text_cache: dict[int, tuple[tuple[bool, int], tuple]] | None = {} if cache_text else None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def modality_lengths(self) -> list[int]:
        return [modality_length(r) for r in self.records]

    def _skip(self, index: int, reason: str) -> Sample:
        rid = self.records[index].get("id")
        if self.strict:
            raise ValueError(f"record {index} (id {rid!r}): {reason} (--strict)")
        empty = torch.zeros(0, dtype=torch.long)
        # the id too: `index` counts the records kept after data.subsample, not the file's lines
        return Sample(index, empty, empty, None, skipped=f"id {rid!r}: {reason}")

    def _image(self, path: str) -> tuple[torch.Tensor, Size | None, int]:
        """(pixel_values, AnyRes image size or None, prompt positions) of one record's image."""
        image = load_image(self.image_folder / path).convert("RGB")
        if self.image_aspect_ratio == "anyres":
            views = process_anyres_image(image, self.image_config, self.image_grid_pinpoints)
            return views, image.size, self.image_token_count(image.size)
        pixel_values = process_images([image], self.image_config, self.image_aspect_ratio)[0]
        return pixel_values, None, self.num_image_tokens

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        conversations = record["conversations"]
        pixel_values, image_size, n_image = None, None, 0
        if "image" in record:
            try:
                pixel_values, image_size, n_image = self._image(record["image"])
            except (ImageError, OSError) as e:
                return self._skip(index, f"image {record['image']!r}: {e}")
        shape = (pixel_values is not None, n_image)  # what the tokens depend on beside the record
        cached = self.text_cache.get(index) if self.text_cache is not None else None
        if cached is not None and cached[0] == shape:
            ids, labels, mismatch, length = cached[1]
        else:
            ids, labels, mismatch, length = self._text(conversations, *shape)
            if self.text_cache is not None:
                self.text_cache[index] = (shape, (ids, labels, mismatch, length))
        if pixel_values is not None and int((ids == self.image_token_index).sum()) != n_image:
            # a partial image cannot be placed (its features are merged as a whole)
            return self._skip(index, f"the sample is {length} tokens long with its image taking {n_image} "
                                     f"of them: model_max_length={self.model_max_length} cuts through the image")
        return Sample(index, ids, labels, pixel_values, mismatch=mismatch, image_size=image_size)

    def _text(self, conversations: list[dict], has_image: bool, n_image: int,
              ) -> tuple[torch.Tensor, torch.Tensor, bool, int]:
        """(input_ids, labels, official mismatch flag, length before truncation) of a conversation
        whose image (if any) takes `n_image` positions."""
        # encode_conversation applies the official preprocess_multimodal to image samples
        encoded = encode_conversation(conversations, self.tokenizer, self.template, has_image,
                                      self.model_max_length)
        # encode_conversation marks each image with the official -200 sentinel; a llava-hf model
        # (a real `<image>` id) then reads its own id at the expanded positions
        ids, labels = expand_image_tokens(encoded.input_ids, encoded.labels, IMAGE_TOKEN_INDEX,
                                          n_image or self.num_image_tokens)
        # The official code truncates after splicing the image features (prepare_inputs_labels_
        # for_multimodal); expanding first and then cutting gives the same positions.
        length = len(ids)
        ids = torch.as_tensor(ids, dtype=torch.long)[:self.model_max_length]
        ids[ids == IMAGE_TOKEN_INDEX] = self.image_token_index
        labels = torch.as_tensor(labels, dtype=torch.long)[:self.model_max_length]
        return ids, labels, bool(encoded.mismatch), length
