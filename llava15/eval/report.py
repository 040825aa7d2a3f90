"""Reports: one headline number per benchmark in the paper's column order, the paper's
LLaVA-1.5-7B / 13B numbers beside ours (Markdown), and a radar chart like the paper's Figure 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# The paper's column order and its numbers (MODEL_ZOO at HEAD; docs/benchmarks.md, 'Headline numbers').
COLUMNS = ("vqav2", "gqa", "vizwiz", "sqa", "textvqa", "pope", "mme", "mmbench", "mmbench_cn",
           "seed", "llavabench", "mmvet")
TITLES = {"vqav2": "VQAv2", "gqa": "GQA", "vizwiz": "VizWiz", "sqa": "SciQA-IMG",
          "textvqa": "TextVQA", "pope": "POPE", "mme": "MME", "mmbench": "MMBench",
          "mmbench_cn": "MMBench-CN", "seed": "SEED", "llavabench": "LLaVA-W", "mmvet": "MM-Vet"}
PAPER = {
    "LLaVA-1.5-7B": (78.5, 62.0, 50.0, 66.8, 58.2, 85.9, 1510.7, 64.3, 58.3, 58.6, 65.4, 31.1),
    "LLaVA-1.5-13B": (80.0, 63.3, 53.6, 71.6, 61.3, 85.9, 1531.3, 67.7, 63.6, 61.6, 72.5, 36.1),
}


def _pope_f1(s: dict) -> float | None:
    f1 = [m["f1"] for m in s.get("splits", {}).values()]
    return 100 * sum(f1) / len(f1) if f1 else None  # the paper averages the three splits


def _nested(*keys: str) -> Callable[[dict], float | None]:
    def get(s: dict) -> float | None:
        for key in keys:
            if not isinstance(s, dict) or key not in s:
                return None
            s = s[key]
        return s if isinstance(s, (int, float)) else None
    return get


HEADLINE: dict[str, Callable[[dict], float | None]] = {
    "vqav2": _nested("overall"), "gqa": _nested("accuracy"), "vizwiz": _nested("overall"),
    "sqa": _nested("img_acc"), "textvqa": _nested("accuracy"), "pope": _pope_f1,
    "mme": _nested("perception"), "mmbench": _nested("overall"), "mmbench_cn": _nested("overall"),
    "seed": _nested("image"), "llavabench": _nested("summary", "all", "relative"),
    "mmvet": _nested("total"),
}


def headline(name: str, scores: dict) -> float | None:
    """The number the paper reports for a benchmark, or None when it needs a server/judge."""
    return HEADLINE[name](scores)


def markdown_table(ours: dict[str, float | None], label: str = "llava15") -> str:
    cells = lambda row: "| " + " | ".join(row) + " |"  # noqa: E731
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    lines = [cells(["model", *(TITLES[c] for c in COLUMNS)]),
             cells(["---"] * (len(COLUMNS) + 1))]
    for model, values in PAPER.items():
        lines.append(cells([model + " (paper)", *(fmt(v) for v in values)]))
    lines.append(cells([label, *(fmt(ours.get(c)) for c in COLUMNS)]))
    return "\n".join(lines) + "\n"


def radar_chart(ours: dict[str, float | None], out_path: str | Path, label: str = "llava15") -> Path:
    """Each axis scaled to the best of the paper's models and ours (MME to its 2000 maximum)."""
    import math

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    angles = [2 * math.pi * i / len(COLUMNS) for i in range(len(COLUMNS))]
    fig, ax = plt.subplots(figsize=(7, 7), subplot_kw={"polar": True})
    series = {**{k: dict(zip(COLUMNS, v)) for k, v in PAPER.items()}, label: ours}
    for name, values in series.items():
        scaled = []
        for c in COLUMNS:
            top = 2000.0 if c == "mme" else 100.0
            v = values.get(c)
            scaled.append(0.0 if v is None else v / top)
        ax.plot(angles + angles[:1], scaled + scaled[:1], label=name)
        ax.fill(angles + angles[:1], scaled + scaled[:1], alpha=0.1)
    ax.set_xticks(angles)
    ax.set_xticklabels([TITLES[c] for c in COLUMNS])
    ax.set_yticklabels([])
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1))
    fig.tight_layout()
    path = Path(out_path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
