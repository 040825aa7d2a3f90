"""A dry run over training data: what training would do with each record, counted.

`check_dataset` passes every record of a `LazySupervisedDataset` through the dataset's own
`__getitem__` (image loading, `<image>` expansion, the official labels and "tokenization
mismatch" rule, truncation), so its counts are what a run on that dataset would see, minus the
model. Each record lands in at most one problem (`PROBLEMS`, in the order training meets them);
a sample with a problem is not trained on. Truncation and a dropped leading gpt turn are counted
beside them: such samples still train, on less than the record holds.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import shorten

from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from llava15.data.conversation import SEP_PLAIN, Template
from llava15.data.dataset import LazySupervisedDataset
from llava15.data.labels import encode_conversation

# DataCheck field -> label: the samples that train on nothing, in the order training meets them
PROBLEMS = {
    "images_missing": "image missing",
    "images_unreadable": "image unreadable",
    "images_cut": "image cut by model_max_length or lost",
    "rejected": "rejected (training stops with an error)",
    "mismatched": "tokenization mismatch (every label masked)",
    "fully_masked": "fully masked (no target token left)",
}
REASON_CHARS = 240  # an example's reason in the summary (a rejected record's error quotes its turns)
# counted beside the problems: these samples train, on part of the record
NOTES = {"truncated": "truncated by model_max_length",
         "first_turn_gpt": "first turn from gpt (dropped, as officially)"}


@dataclass(frozen=True)
class Example:
    index: int  # position in the dataset's records (the file's, unless data.subsample < 1)
    id: object  # the record's "id" (None when it has none)
    reason: str


@dataclass
class DataCheck:
    """Counts over a dataset's records. `lengths` are the token lengths of the records that were
    tokenized (images expanded to their positions, before truncation); `examples` holds the
    first few records of each counted kind (a `PROBLEMS` or `NOTES` key), in index order."""

    template: str
    model_max_length: int
    samples: int = 0
    with_image: int = 0
    images_missing: int = 0
    images_unreadable: int = 0
    images_cut: int = 0
    rejected: int = 0
    mismatched: int = 0
    fully_masked: int = 0
    truncated: int = 0
    first_turn_gpt: int = 0
    lengths: list[int] = field(default_factory=list)
    examples: dict[str, list[Example]] = field(default_factory=dict)

    @property
    def text_only(self) -> int:
        return self.samples - self.with_image

    @property
    def images_found(self) -> int:
        return self.with_image - self.images_missing

    @property
    def bad(self) -> int:
        """Samples that train on nothing (every `PROBLEMS` kind)."""
        return sum(getattr(self, name) for name in PROBLEMS)

    @property
    def bad_fraction(self) -> float:
        return self.bad / self.samples if self.samples else 0.0

    def length_stats(self) -> tuple[int, float, int, int] | None:
        """(min, median, p95, max) of `lengths`, p95 by nearest rank; None when nothing was tokenized."""
        if not self.lengths:
            return None
        ordered = sorted(self.lengths)
        p95 = ordered[max(0, -(-95 * len(ordered) // 100) - 1)]
        return ordered[0], statistics.median(ordered), p95, ordered[-1]

    def format(self, compact: bool = False) -> str:
        """The summary a person reads; `compact` leaves out zero counts and examples."""
        lines = [f"{self.samples} samples (template {self.template}, model_max_length {self.model_max_length}): "
                 f"{self.with_image} with an image ({self.images_found} found, {self.images_missing} missing), "
                 f"{self.text_only} text only",
                 f"problems, not trained on: {self.bad} ({100 * self.bad_fraction:.2f}%)"]
        counted = {**PROBLEMS, **NOTES}
        for name, label in counted.items():
            if getattr(self, name) or not compact:
                lines.append(f"  {label}: {getattr(self, name)}")
        if stats := self.length_stats():
            lines.append("token lengths (images expanded, before truncation): min {}, median {:g}, p95 {}, "
                         "max {}".format(*stats) + f" over {len(self.lengths)} tokenized samples")
        if self.mismatched and self.mismatched == len(self.lengths):
            lines.append("every tokenized sample mismatched: do the template and tokenizer fit this data?")
        if not compact:
            for name, label in counted.items():
                lines += [f"  {label}: record {e.index} (id {e.id!r}): {shorten(e.reason, REASON_CHARS)}"
                          for e in self.examples.get(name, [])]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Outcome:
    """One record's result, small enough to send back from a DataLoader worker."""

    index: int
    has_image: bool
    kind: str  # a PROBLEMS key, or "" when the sample trains
    reason: str
    length: int | None  # tokens before truncation; None when the record was not tokenized
    truncated: bool
    first_turn_gpt: bool


def mismatch_reason(conversations: list[dict], template: Template) -> str:
    """Why the official rule may have masked a record: a turn holding one of the template's role or
    end strings splits its rounds wrongly; otherwise the template or tokenizer may not fit."""
    markers = [m.strip() for m in (*template.roles, template.sep2 or "") if m.strip()]
    for k, turn in enumerate(conversations):
        if found := next((m for m in markers if m in turn["value"]), None):
            return f"conversations[{k}] ({turn['from']}) contains {found!r}"
    return "the official round lengths do not add up to the sample's tokens"


class _Inspector(Dataset):
    """Runs the dataset's own `__getitem__` and turns its `Sample` into an `_Outcome`."""

    def __init__(self, dataset: LazySupervisedDataset) -> None:
        # A copy with a cache of its own: a cached entry holds the length before truncation,
        # which `Sample` does not carry; the caller's dataset is left as it was.
        self.dataset = copy.copy(dataset)
        self.dataset.text_cache = {}
        self.dataset.strict = False  # count what --strict would stop on

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> _Outcome:
        ds = self.dataset
        record = ds.records[index]
        has_image = "image" in record
        first_gpt = ds.template.sep_style != SEP_PLAIN and record["conversations"][0]["from"] == "gpt"
        try:
            sample = ds[index]
        except ValueError as e:  # e.g. roles that do not alternate: the official code raises too
            return _Outcome(index, has_image, "rejected", str(e), None, False, first_gpt)
        cached = ds.text_cache.pop(index, None)
        length = cached[1][3] if cached is not None else None
        mml = ds.model_max_length
        if length is not None and not has_image and length >= mml:
            # text-only records are cut while they are encoded: encode again, uncut, for the length
            length = len(encode_conversation(record["conversations"], ds.tokenizer, ds.template, False,
                                             sys.maxsize).input_ids)
        reason = sample.skipped.removeprefix(f"id {record.get('id')!r}: ")
        if sample.skipped and length is not None:  # tokenized, then skipped: the image did not fit
            kind = "images_cut"
            if length <= mml:  # not cut: the placeholder never reached the tokens
                reason = ("no <image> placeholder left in its tokens (none in the turns, or one in a "
                          "leading gpt turn, which is dropped)")
        elif sample.skipped:
            kind = "images_unreadable" if (ds.image_folder / record["image"]).exists() else "images_missing"
        elif sample.num_targets == 0:
            kind = "mismatched" if sample.mismatch else "fully_masked"
            reason = (mismatch_reason(record["conversations"], ds.template) if sample.mismatch
                      else "no target token left" + (f" after the cut at {mml}" if length > mml else ""))
        else:
            kind = ""
        truncated = not sample.skipped and length is not None and length > mml
        return _Outcome(index, has_image, kind, reason, length, truncated, first_gpt)


def _add_example(check: DataCheck, name: str, example: Example, limit: int) -> None:
    found = check.examples.setdefault(name, [])
    if len(found) < limit:
        found.append(example)


def check_dataset(dataset: LazySupervisedDataset, *, num_workers: int = 0, examples: int = 5,
                  progress: bool | None = None, indices: Sequence[int] | None = None) -> DataCheck:
    """Count what training would do with every record of `dataset` (or the records `indices`
    names: a process's share, see `merge_checks`).

    Records are read by `num_workers` DataLoader workers (0: in this process); `examples` records of
    each kind are kept; `progress` shows a tqdm bar (None: when stderr is a terminal). `dataset` is
    not modified. Every record is counted once in `samples`; nothing is left out.
    """
    check = DataCheck(dataset.template.name, dataset.model_max_length)
    inspector = _Inspector(dataset)
    chosen = inspector if indices is None else Subset(inspector, list(indices))
    # `list` as collate_fn keeps the outcomes as they are; batches of 64 keep worker traffic low
    loader = DataLoader(chosen, batch_size=64, collate_fn=list, num_workers=num_workers)
    with tqdm(total=len(chosen), desc="check-data", unit="sample",
              disable=None if progress is None else not progress) as bar:
        for batch in loader:
            for outcome in batch:
                _count(check, outcome, dataset.records[outcome.index].get("id"), examples)
            bar.update(len(batch))
    return check


def merge_checks(checks: Sequence[DataCheck], examples: int = 5) -> DataCheck:
    """One summary of checks over disjoint shares of the same data: counts and lengths added,
    the first `examples` of each kind kept (in the order of `checks`)."""
    merged = DataCheck(checks[0].template, checks[0].model_max_length)
    for check in checks:
        for f in dataclasses.fields(DataCheck):
            value = getattr(check, f.name)
            if isinstance(value, int) and f.name != "model_max_length":
                setattr(merged, f.name, getattr(merged, f.name) + value)
        merged.lengths += check.lengths
        for kind, found in check.examples.items():
            kept = merged.examples.setdefault(kind, [])
            kept += found[:max(0, examples - len(kept))]
    return merged


def _count(check: DataCheck, o: _Outcome, rid: object, examples: int) -> None:
    check.samples += 1
    check.with_image += o.has_image
    if o.length is not None:
        check.lengths.append(o.length)
    if o.kind:
        setattr(check, o.kind, getattr(check, o.kind) + 1)
        _add_example(check, o.kind, Example(o.index, rid, o.reason), examples)
    if o.truncated:
        check.truncated += 1
        _add_example(check, "truncated", Example(o.index, rid, f"{o.length} tokens, cut to {check.model_max_length}"),
                     examples)
    if o.first_turn_gpt:
        check.first_turn_gpt += 1
        _add_example(check, "first_turn_gpt", Example(o.index, rid, "its first turn is dropped"), examples)


def plot_lengths(check: DataCheck, path: str | Path) -> Path:
    """A histogram of `check.lengths` with `model_max_length` marked, written as a PNG at `path`.
    Raises ImportError when matplotlib is not installed (pip install llava15[plot])."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)  # a Figure of its own: no pyplot global state
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if check.lengths:
        axes.hist(check.lengths, bins=min(60, max(1, len(set(check.lengths)))))
    axes.axvline(check.model_max_length, color="tab:red", linestyle="--",
                 label=f"model_max_length {check.model_max_length}")
    axes.set_xlabel("tokens per sample (images expanded, before truncation)")
    axes.set_ylabel("samples")
    axes.set_title(f"{len(check.lengths)} tokenized of {check.samples} samples ({check.bad} with problems)")
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path

