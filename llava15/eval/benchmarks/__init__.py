"""The twelve benchmarks of LLaVA-1.5, one module each (ids as in `scripts/v1_5/eval/*.sh`).

Every module has `FILES` (official file names relative to its data folder), `load(data_dir)
-> list[Question]` and `score(answers, data_dir) -> dict`; modules whose official number comes
from a server also have `write_submission(answers, data_dir, out_path) -> Path`, and modules
whose images live in a subfolder have `image_root(data_dir)`.
"""

from llava15.eval.benchmarks import (gqa, llavabench, mmbench, mmbench_cn, mme, mmvet, pope,
                                     seed, sqa, textvqa, vizwiz, vqav2)

BENCHMARKS = {"vqav2": vqav2, "gqa": gqa, "vizwiz": vizwiz, "sqa": sqa, "textvqa": textvqa,
              "pope": pope, "mme": mme, "mmbench": mmbench, "mmbench_cn": mmbench_cn,
              "seed": seed, "llavabench": llavabench, "mmvet": mmvet}
