"""What a person sees: a progress bar, metrics as JSONL, curves as PNG, and end-of-run summaries."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm import tqdm

from llava15.train.state import TrainerState

log = logging.getLogger("llava15.train")


class Progress:
    """A tqdm bar (loss, lr, tokens/s; tqdm supplies the ETA) and a JSONL metrics file, main process only."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                        dynamic_ncols=True, disable=not enabled)

    def update(self, metrics: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:  # appended: a resumed run continues the file
            f.write(json.dumps(metrics) + "\n")
        self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}",
                             tok_s=f"{metrics['tokens_per_s']:.0f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def read_metrics(path: Path) -> list[dict]:
    """Metrics rows, the last row per step winning (a resumed run repeats steps after its checkpoint)."""
    if not path.is_file():
        return []
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["step"]] = row
    return [rows[k] for k in sorted(rows)]


def plot_curves(run_dir: Path) -> list[Path]:
    """loss.png and lr.png from metrics.jsonl; nothing (with a note) when matplotlib is missing."""
    rows = read_metrics(run_dir / "metrics.jsonl")
    if not rows:
        return []
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed (pip install llava15[plot]): no curves written")
        return []
    written = []
    steps = [r["step"] for r in rows]
    for key, label in (("loss", "training loss"), ("lr", "learning rate")):
        figure = Figure(figsize=(6, 3.5), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.plot(steps, [r[key] for r in rows])
        axes.set_xlabel("optimizer step")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        path = run_dir / f"{key}.png"
        figure.savefig(path)
        written.append(path)
    return written


def data_summary(state: TrainerState) -> str:
    lines = [f"trained on {state.samples} samples, {state.tokens} tokens in {state.step} steps",
             f"skipped (image missing, corrupt or cut by model_max_length): {state.skipped}",
             f"fully masked (no target token left, not trained on): {state.fully_masked}"
             f" (tokenization mismatch: {state.mismatched})"]
    lines += [f"  record {index}: {reason}" for index, reason in state.skipped_examples]
    return "\n".join(lines)
