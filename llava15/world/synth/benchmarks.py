"""The held-out benchmarks: id -> (official directory, writer, size at a given eval unit).

Ids follow `scripts/v1_5/eval/*.sh` names (docs/design.md, 'Naming'); directories are the official
`playground/data/eval/<dir>` names, so a harness written against that layout runs here.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from llava15.world.synth.bench_choice import write_mmbench, write_mmbench_cn, write_seed, write_sqa
from llava15.world.synth.bench_common import Bench
from llava15.world.synth.bench_open import write_llavabench, write_mmvet
from llava15.world.synth.bench_vqa import write_gqa, write_textvqa, write_vizwiz, write_vqav2
from llava15.world.synth.bench_yesno import write_mme, write_pope

# id -> (directory under eval/, writer, count as a function of the scale's eval unit n).
# Counts are images (vqav2, gqa, pope, llavabench), images per category (mme) or questions.
Writer = Callable[[Bench, int], None]
BENCHMARKS: MappingProxyType[str, tuple[str, Writer, Callable[[int], int]]] = MappingProxyType({
    # the demo's short-answer suite (3 questions an image): 4n images give each question type
    # about 200 questions at the demo scale, so a type's accuracy is known to about +-0.035
    "vqav2": ("vqav2", write_vqav2, lambda n: 4 * n),
    "gqa": ("gqa", write_gqa, lambda n: n),
    "vizwiz": ("vizwiz", write_vizwiz, lambda n: n),
    "textvqa": ("textvqa", write_textvqa, lambda n: n),
    "pope": ("pope", write_pope, lambda n: max(4, n // 2)),
    "mme": ("MME", write_mme, lambda n: max(2, n // 6)),
    "mmbench": ("mmbench", write_mmbench, lambda n: n),
    "mmbench_cn": ("mmbench_cn", write_mmbench_cn, lambda n: max(4, n // 2)),
    "seed": ("seed_bench", write_seed, lambda n: 2 * n),
    "sqa": ("scienceqa", write_sqa, lambda n: n),
    "llavabench": ("llava-bench-in-the-wild", write_llavabench,
                   lambda n: min(24, max(4, n // 6))),
    "mmvet": ("mm-vet", write_mmvet, lambda n: max(6, n // 2)),
})
