"""Load any supported checkpoint directory into our `Llava` (nothing is downloaded).

Layouts, detected from the files:
- `official`: an official full checkpoint (`pytorch_model*.bin` or `model*.safetensors`, one file or
  shards + index) plus the CLIP directory its config names;
- `official-projector`: `mm_projector.bin` + `config.json` over `model_base` (a LlamaForCausalLM
  directory), as the official builder loads when given a base (a full checkpoint that also ships
  `mm_projector.bin` loads this way too when a base is given, as officially);
- `official-lora`: `adapter_config.json` + adapter weights + `non_lora_trainables.bin` over `model_base`,
  merged on load;
- `llava-hf-old` / `llava-hf-new`: a `LlavaForConditionalGeneration` or
  `LlavaNextForConditionalGeneration` checkpoint with hub nesting (`language_model.model.*`,
  which transformers 4.57's `save_pretrained` still writes) or transformers >= 4.52 in-memory
  nesting (`model.language_model.*`). LLaVA-NeXT ones load as AnyRes models that follow
  transformers (`llava_next`).

Every source key is renamed through the tables in `layouts`; before any data is read, every expected
key must be present, no unknown key may remain and every shape must match (errors list them with
their files). The model is built on the meta device and each tensor is read straight into its
parameter, shard by shard, so peak memory stays near the size of the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from llava15.checkpoint.configs import ConfigInfo, read_llava_config
from llava15.checkpoint.files import WeightFile, checkpoint_files, open_weight_file
from llava15.checkpoint.gguf_pair import is_gguf
from llava15.checkpoint.layouts import (CLIP, OFFICIAL, OFFICIAL_FLAT, Rules, hf_layout_of,
                                        HF_NEW, rename)
from llava15.checkpoint.llava_next import LLAVA_NEXT, llava_next_image_processor
from llava15.checkpoint.lora import (is_lora_dir, lora_factors, merge_lora, non_lora_names, open_adapter,
                                     read_adapter_config)
from llava15.checkpoint.placement import ParamCounts, Placement, PlacementRequest
from llava15.checkpoint.quantize import quantize_bitsandbytes, with_int8_linears
from llava15.config import LlavaConfig
from llava15.data.image import ImageProcessorConfig
from llava15.model.llava import Llava

MAX_LISTED = 20  # keys listed per kind of problem in an error message


@dataclass
class LoadedCheckpoint:
    """A loaded model and what goes with it: the directory holding its tokenizer (the base LLM's
    for projector-only and LoRA checkpoints, as officially), the image preprocessing (the CLIP
    directory's `preprocessor_config.json` for official layouts), the layout name and notes."""

    model: Llava
    config: LlavaConfig
    tokenizer_dir: Path
    image_processor: ImageProcessorConfig
    layout: str
    notes: tuple[str, ...] = ()
    placement: Placement = Placement()


@dataclass(frozen=True)
class Source:
    file: WeightFile
    key: str


# A group of files whose keys one renaming function maps to ours (None: dropped; KeyError: unknown).
Group = tuple[list[WeightFile], Callable[[str], str | None]]


def load_llava(directory: str | Path, *, vision_tower: str | Path | None = None,
               model_base: str | Path | None = None, dtype: torch.dtype = torch.float32,
               placement: PlacementRequest | None = None,
               mmproj: str | Path | None = None) -> LoadedCheckpoint:
    """Load a checkpoint directory in any supported layout (module docstring).

    Without `placement` every weight is `dtype` on the CPU (what conversion and training want);
    with it, the device, dtypes and quantization are resolved from the request and the model's
    size before any tensor is read (`llava15.checkpoint.placement`), and refused there with a
    one-line reason when they cannot run. `vision_tower` overrides the CLIP directory of official
    configs; `model_base` is the base LLM directory of projector-only and LoRA checkpoints.
    A GGUF language model (or a folder of GGUF files) loads with its `mmproj` file, given or
    found beside it (`llava15.checkpoint.gguf_pair`). Errors name the file and key.
    """
    directory = Path(directory)
    if is_gguf(directory) or mmproj is not None:
        return _load_gguf(directory, mmproj, dtype, placement)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a local checkpoint directory (nothing is downloaded: "
                                "pass the path of a local copy)")
    if placement is not None:
        placement.check()
    base = Path(model_base) if model_base is not None else None
    layout = detect_layout(directory, base)
    config, info = read_llava_config(directory, vision_tower, base if layout.startswith("official-") else None)
    with torch.device("meta"):
        counts = ParamCounts.of(Llava(config))
    chosen = (placement.resolve(counts, source=str(directory)) if placement is not None
              else Placement(torch.device("cpu"), dtype, dtype))
    groups, factors, adapter = _groups(layout, directory, base, config, info)
    try:
        model = materialize(config, plan_sources(groups), chosen)
    finally:
        for files, _ in groups:
            for f in files:
                f.close()
    if factors:
        if chosen.quantization and not chosen.uses_bitsandbytes:
            raise ValueError(f"{directory}: a LoRA checkpoint merges into float weights; load it "
                             "without --load-8bit, save it merged, then quantize that")
        with torch.no_grad():
            merge_lora(dict(model.named_parameters()), adapter, factors)
        adapter.close()
    if chosen.uses_bitsandbytes:
        quantize_bitsandbytes(model, chosen)
    tokenizer_dir = base if layout in ("official-projector", "official-lora") else directory
    if info.architecture == LLAVA_NEXT:
        image_processor, notes = llava_next_image_processor(directory / "preprocessor_config.json", config)
    else:
        processor_dir = info.vision_tower_dir if info.format == "official" else directory
        image_processor, notes = _image_processor(processor_dir, config)
    return LoadedCheckpoint(model.eval(), config, tokenizer_dir, image_processor, layout,
                            info.notes + notes, chosen)


def _load_gguf(path: Path, mmproj: str | Path | None, dtype: torch.dtype,
               placement: PlacementRequest | None) -> LoadedCheckpoint:
    from llava15.checkpoint import gguf_pair

    if placement is not None:
        placement.check()
    files = gguf_pair.find_pair(path, mmproj)
    config, weights = gguf_pair.open_pair(files)
    with torch.device("meta"):
        counts = ParamCounts.of(Llava(config))
    chosen = (placement.resolve(counts, source=str(files.llm)) if placement is not None
              else Placement(torch.device("cpu"), dtype, dtype))
    if chosen.uses_bitsandbytes:
        raise ValueError(f"{files.llm}: --load-8bit/--load-4bit on CUDA quantize float weights; "
                         "a GGUF pair carries its own quantization")
    plan = plan_sources([(weights, lambda key: key)])
    model = materialize(config, plan, chosen)
    return LoadedCheckpoint(model.eval(), config, gguf_pair.tokenizer_dir(files),
                            gguf_pair.image_processor(config), "gguf",
                            (f"GGUF pair {files.llm.name} + {files.mmproj.name}",), chosen)


def detect_layout(directory: Path, model_base: Path | None) -> str:
    """The layout name of a checkpoint directory, from its files (and the base, if any)."""
    if is_lora_dir(directory) or (directory / "non_lora_trainables.bin").is_file():
        if model_base is None:
            raise ValueError(f"{directory}: a LoRA checkpoint (adapter_config.json) needs model_base=DIR, "
                             "the LLM it was trained over (command line: --model-base DIR)")
        return "official-lora"
    if model_base is not None and (directory / "mm_projector.bin").is_file():
        return "official-projector"
    if model_base is not None:
        raise ValueError(f"{directory}: model_base was given but there is no mm_projector.bin or "
                         "adapter_config.json to load over it")
    try:
        weights = checkpoint_files(directory)
    except FileNotFoundError:
        if (directory / "mm_projector.bin").is_file():
            raise ValueError(f"{directory}: a projector-only checkpoint (mm_projector.bin) needs "
                             "model_base=DIR, the LLM it goes with (command line: --model-base DIR)") from None
        raise
    keys = [k for f in weights for k in f.infos]
    for f in weights:
        f.close()
    if any(k.startswith(("language_model.", "model.language_model.")) for k in keys):
        return "llava-hf-new" if hf_layout_of(keys) is HF_NEW else "llava-hf-old"
    return "official"


def _groups(layout: str, directory: Path, base: Path | None, config: LlavaConfig,
            info: ConfigInfo) -> tuple[list[Group], list, WeightFile | None]:
    if layout.startswith("llava-hf"):
        files = checkpoint_files(directory)
        rules = hf_layout_of([k for f in files for k in f.infos])
        return [(files, _by(rules))], [], None
    official = OFFICIAL if "unpad" in config.mm_patch_merge_type else OFFICIAL_FLAT
    assert info.vision_tower_dir is not None
    groups: list[Group] = [(checkpoint_files(info.vision_tower_dir), _by(CLIP))]
    if layout == "official":
        return groups + [(checkpoint_files(directory), _by(official))], [], None
    groups.append((checkpoint_files(base), _by(official)))
    if layout == "official-projector":
        return groups + [([open_weight_file(directory / "mm_projector.bin")], _by(official))], [], None
    non_lora = open_weight_file(directory / "non_lora_trainables.bin")
    names = non_lora_names(list(non_lora.infos))
    groups.append(([non_lora], lambda key: rename(names[key], official)))
    adapter = open_adapter(directory)
    return groups, lora_factors(adapter, read_adapter_config(directory)), adapter


def _by(rules: Rules) -> Callable[[str], str | None]:
    return lambda key: rename(key, rules)


def plan_sources(groups: list[Group]) -> dict[str, Source]:
    """Our key -> where its data is. Later groups override earlier ones (a projector file over a
    base LLM, as the official `load_state_dict(strict=False)` does); within a group a key may
    come from one file only. Unknown keys raise ValueError listing them with their files."""
    plan: dict[str, Source] = {}
    unknown = []
    for files, to_ours in groups:
        seen: dict[str, Source] = {}
        for f in files:
            for key in f.infos:
                try:
                    ours = to_ours(key)
                except KeyError:
                    unknown.append(f"{f.path}: {key}")
                    continue
                if ours is None:
                    continue
                if ours in seen:
                    raise ValueError(f"{f.path}: key {key!r} is also in {seen[ours].file.path} (as {seen[ours].key!r})")
                seen[ours] = Source(f, key)
        plan.update(seen)
    if unknown:
        raise ValueError(f"{len(unknown)} unknown weight key(s) (no rule maps them to the model):\n  "
                         + "\n  ".join(unknown[:MAX_LISTED]))
    return plan


def check_plan(plan: dict[str, Source], expected: dict[str, tuple[int, ...]]) -> None:
    """Every expected key present, none unexpected, every shape equal; one error lists all problems."""
    problems = []
    missing = [k for k in expected if k not in plan]
    if missing:
        problems.append(f"missing {len(missing)} key(s): " + ", ".join(missing[:MAX_LISTED]))
    extra = [f"{s.file.path}: {s.key} (-> {k})" for k, s in plan.items() if k not in expected]
    if extra:
        problems.append(f"{len(extra)} key(s) the model does not have:\n  " + "\n  ".join(extra[:MAX_LISTED]))
    shapes = [f"{s.file.path}: {s.key} has shape {list(s.file.infos[s.key].shape)}, the model's {k} "
              f"is {list(expected[k])}" for k, s in plan.items()
              if k in expected and tuple(s.file.infos[s.key].shape) != tuple(expected[k])]
    problems += shapes[:MAX_LISTED]
    if problems:
        raise ValueError("checkpoint does not fit the model config:\n" + "\n".join(problems))


def materialize(config: LlavaConfig, plan: dict[str, Source], placement: Placement) -> Llava:
    """Build `Llava(config)` without initialising it, in the placement's dtypes, and read every
    tensor into place, one file after another, releasing each file once its tensors are copied.
    Decoder linears quantized on the CPU are read one tensor at a time and quantized as they
    arrive, so no float copy of the model ever exists. With bitsandbytes the model is read onto
    the CPU in float16 and quantized onto the GPU afterwards (`quantize_bitsandbytes`)."""
    with torch.device("meta"):
        model = Llava(config)
    model.vision_tower.to(placement.vision_dtype)
    model.multi_modal_projector.to(placement.vision_dtype)
    model.language_model.to(placement.dtype)
    if getattr(model, "image_newline", None) is not None:
        model.image_newline.data = model.image_newline.data.to(placement.dtype)
    quantized = with_int8_linears(model) if placement.quantization and not placement.uses_bitsandbytes else {}
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in quantized.values()}
    check_plan(plan, expected)
    model.to_empty(device="cpu" if placement.uses_bitsandbytes else placement.device)
    params = model.state_dict()
    modules = dict(model.named_modules())
    files: dict[Path, list[tuple[str, Source]]] = {}
    for ours, source in plan.items():
        files.setdefault(source.file.path, []).append((ours, source))
    with torch.no_grad():
        for entries in files.values():
            for ours, source in entries:
                if ours in quantized:
                    modules[ours.removesuffix(".weight")].quantize_from(source.file.tensor(source.key))
                    source.file.drop(source.key)
                else:
                    source.file.read_into(source.key, params[ours])
            entries[0][1].file.close()
    return model


def _image_processor(directory: Path | None, config: LlavaConfig) -> tuple[ImageProcessorConfig, tuple[str, ...]]:
    path = directory / "preprocessor_config.json" if directory is not None else None
    if path is not None and path.is_file():
        return ImageProcessorConfig.from_file(path), ()
    size = config.vision.image_size
    return (ImageProcessorConfig(shortest_edge=size, crop_size=(size, size), image_mean=config.image_mean,
                                 image_std=config.image_std),
            (f"{path}: not found; using CLIP preprocessing at {size} px",))
