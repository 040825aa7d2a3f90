"""Weight files read lazily: names, shapes and dtypes first, tensor data one tensor at a time.

Two formats:
- safetensors: the header is parsed here and each tensor is read with `readinto` straight into its
  destination (no memory map, no second copy when the dtypes agree);
- PyTorch `.bin` (pickled): only through `torch.load(weights_only=True, map_location="cpu")`,
  memory-mapped when the file is in the zip format, so a shard is paged in as it is copied.

A checkpoint directory holds one file or shards listed by an index (`*.index.json` with a
`weight_map`); `checkpoint_files` finds them and checks that the index and the shards agree.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
# (single file, index of shards) in the order a directory is searched
WEIGHT_FILES = (("model.safetensors", "model.safetensors.index.json"),
                ("pytorch_model.bin", "pytorch_model.bin.index.json"))


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: torch.dtype


class WeightFile:
    """One weight file: `infos` maps every tensor name to its shape and dtype; `read_into` copies
    one tensor into a preallocated destination (converting the dtype if needed)."""

    path: Path
    infos: dict[str, TensorInfo]

    def read_into(self, key: str, out: torch.Tensor) -> None:
        raise NotImplementedError

    def read(self, key: str) -> torch.Tensor:
        info = self.infos[key]
        out = torch.empty(info.shape, dtype=info.dtype)
        self.read_into(key, out)
        return out

    def close(self) -> None:
        """Release what the file holds (memory maps, loaded tensors)."""


class SafetensorsFile(WeightFile):
    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ValueError(f"{path}: not a safetensors file (shorter than its header length)")
            (n,) = struct.unpack("<Q", head)
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{path}: unreadable safetensors header: {e}") from e
        self._data_start = 8 + n
        self._offsets: dict[str, tuple[int, int]] = {}
        self.infos = {}
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            if entry.get("dtype") not in SAFETENSORS_DTYPES:
                raise ValueError(f"{path}: tensor {key!r} has unsupported dtype {entry.get('dtype')!r}")
            info = TensorInfo(tuple(entry["shape"]), SAFETENSORS_DTYPES[entry["dtype"]])
            begin, end = entry["data_offsets"]
            if end - begin != _nbytes(info):
                raise ValueError(f"{path}: tensor {key!r} has {end - begin} bytes for shape "
                                 f"{list(info.shape)} {entry['dtype']}")
            self.infos[key] = info
            self._offsets[key] = (begin, end)

    def read_into(self, key: str, out: torch.Tensor) -> None:
        info = self.infos[key]
        direct = out.dtype == info.dtype and out.is_contiguous() and out.device.type == "cpu"
        target = out if direct else torch.empty(info.shape, dtype=info.dtype)
        begin, end = self._offsets[key]
        buffer = target.reshape(-1).view(torch.uint8).numpy() if target.numel() else None
        with open(self.path, "rb") as f:
            f.seek(self._data_start + begin)
            got = f.readinto(memoryview(buffer)) if buffer is not None else 0
        if got != end - begin:
            raise ValueError(f"{self.path}: tensor {key!r} is truncated ({got} of {end - begin} bytes)")
        if not direct:
            out.copy_(target)


class TorchBinFile(WeightFile):
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # only the legacy (non-zip) format cannot be mapped
                raise ValueError(f"{path}: cannot load: {e}") from e
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: cannot load with torch.load(weights_only=True): {e}") from e
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path}: expected a dict of tensors (a state dict)")
        self._state: dict[str, torch.Tensor] = state
        self.infos = {k: TensorInfo(tuple(v.shape), v.dtype) for k, v in state.items()}

    def read_into(self, key: str, out: torch.Tensor) -> None:
        out.copy_(self._state[key])

    def close(self) -> None:
        self._state = {}


def open_weight_file(path: Path) -> WeightFile:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found")
    if path.suffix == ".safetensors":
        return SafetensorsFile(path)
    if path.suffix in (".bin", ".pt", ".pth"):
        return TorchBinFile(path)
    raise ValueError(f"{path}: unknown weight file type (expected .safetensors or .bin)")


def checkpoint_files(directory: Path) -> list[WeightFile]:
    """The weight files of a Hugging Face-style checkpoint directory, index and shards checked.

    Raises FileNotFoundError naming the directory and the files looked for, or a shard the index
    names; ValueError when the index lists a tensor its shard lacks.
    """
    for single, index in WEIGHT_FILES:
        if (directory / index).is_file():
            return _sharded(directory / index)
        if (directory / single).is_file():
            return [open_weight_file(directory / single)]
    looked = ", ".join(name for pair in WEIGHT_FILES for name in pair)
    raise FileNotFoundError(f"{directory}: no weights found (looked for {looked})")


def _sharded(index_path: Path) -> list[WeightFile]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{index_path}: unreadable index (need a 'weight_map'): {e}") from e
    files = []
    for shard in sorted(set(weight_map.values())):
        if not (index_path.parent / shard).is_file():
            raise FileNotFoundError(f"{index_path}: shard {shard!r} is missing from {index_path.parent}")
        files.append(open_weight_file(index_path.parent / shard))
    by_name = {f.path.name: f for f in files}
    for key, shard in weight_map.items():
        if key not in by_name[shard].infos:
            raise ValueError(f"{index_path}: key {key!r} is listed in shard {shard!r}, which lacks it")
    return files


def _nbytes(info: TensorInfo) -> int:
    count = 1
    for d in info.shape:
        count *= d
    return count * torch.empty((), dtype=info.dtype).element_size()
