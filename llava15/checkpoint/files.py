"""Weight files read lazily: names, shapes and dtypes first, tensor data one tensor at a time.

Two formats:
- safetensors: the header is parsed here and each tensor is read with `readinto` straight into its
  destination (no memory map, no second copy when the dtypes agree);
- PyTorch `.bin` (pickled): only through `torch.load(weights_only=True, map_location="cpu")`,
  memory-mapped when the file is in the zip format, so a shard is paged in as it is copied; the
  pages of each tensor are handed back to the kernel once it is copied (`drop_pages`), so a
  loaded shard does not stay resident beside the weights it was copied into.

A checkpoint directory holds one file or shards listed by an index (`*.index.json` with a
`weight_map`); `checkpoint_files` finds them and checks that the index and the shards agree.
"""

from __future__ import annotations

import ctypes
import functools
import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
CHUNK_BYTES = 4 << 20  # converting reads go through a buffer of at most this size (a fixed cost beside
# the weights: 4 MiB is 2.5% of a 160 MB test model; converting 512 MB of float32 to bfloat16
# took 0.11-0.13 s through 4 MiB, 0.16-0.18 s through 16 MiB)
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

    def tensor(self, key: str) -> torch.Tensor:
        """The tensor in its stored dtype, to be read once and then `drop`ped (a memory-mapped
        view where the format allows: no copy)."""
        return self.read(key)

    def drop(self, key: str) -> None:
        """The caller is done with `key`: release what holds its data in memory, if anything."""

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
        """Straight into `out` when the dtypes agree; otherwise through a bounded buffer, chunk by
        chunk (a checkpoint stored in float32 loads as bfloat16 without a float32 copy of its
        largest tensor beside the weights)."""
        info = self.infos[key]
        begin, end = self._offsets[key]
        if out.dtype == info.dtype and out.is_contiguous() and out.device.type == "cpu":
            self._read_range(key, begin, end, out.reshape(-1))
            return
        flat = out.view(-1) if out.is_contiguous() else None
        size = torch.empty((), dtype=info.dtype).element_size()
        step = max(1, CHUNK_BYTES // size)
        if flat is None or flat.numel() <= step:
            buffer = torch.empty(info.shape, dtype=info.dtype)
            self._read_range(key, begin, end, buffer.reshape(-1))
            out.copy_(buffer)
            return
        buffer = torch.empty(step, dtype=info.dtype)
        for first in range(0, flat.numel(), step):
            n = min(step, flat.numel() - first)
            self._read_range(key, begin + first * size, begin + (first + n) * size, buffer[:n])
            flat[first:first + n].copy_(buffer[:n])

    def _read_range(self, key: str, begin: int, end: int, target: torch.Tensor) -> None:
        """Bytes [begin, end) of the data section into the contiguous CPU tensor `target`."""
        if end == begin:
            return
        with open(self.path, "rb") as f:
            f.seek(self._data_start + begin)
            got = f.readinto(memoryview(target.view(torch.uint8).numpy()))
        if got != end - begin:
            raise ValueError(f"{self.path}: tensor {key!r} is truncated ({got} of {end - begin} "
                             "bytes read)")


class TorchBinFile(WeightFile):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._mapped = True
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # only the legacy (non-zip) format cannot be mapped
                raise ValueError(f"{path}: cannot load: {e}") from e
            state = torch.load(path, map_location="cpu", weights_only=True)
            self._mapped = False
        except Exception as e:
            raise ValueError(f"{path}: cannot load with torch.load(weights_only=True): {e}") from e
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path}: expected a dict of tensors (a state dict)")
        self._state: dict[str, torch.Tensor] = state
        self.infos = {k: TensorInfo(tuple(v.shape), v.dtype) for k, v in state.items()}

    def read_into(self, key: str, out: torch.Tensor) -> None:
        out.copy_(self._state[key])
        self.drop(key)

    def drop(self, key: str) -> None:
        if self._mapped:
            drop_pages(self._state[key])

    def tensor(self, key: str) -> torch.Tensor:
        return self._state[key]

    def close(self) -> None:
        self._state = {}


@functools.cache
def _madvise():
    """libc's madvise, or None where there is none (not Linux/glibc)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return fn


def drop_pages(tensor: torch.Tensor) -> None:
    """Tell the kernel the whole pages under a memory-mapped tensor are not needed any more
    (MADV_DONTNEED): they leave the process's resident set, and are read from the file again if
    touched. Only for tensors `torch.load(mmap=True)` made, whose map is private and unwritten,
    so nothing is lost (on ordinary memory it would zero the data)."""
    drop_range(tensor.data_ptr(), tensor.numel() * tensor.element_size())


def drop_range(start: int, nbytes: int) -> None:
    """`drop_pages` for the whole pages of `nbytes` at address `start` of a read-only or private,
    unwritten file mapping."""
    madvise = _madvise()
    if madvise is None:
        return
    end = start + nbytes
    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, end // page * page
    if last > first:
        madvise(first, last - first, 4)  # MADV_DONTNEED


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
