"""The demo's report: a table per question type beside the blind baseline, example answers,
`results.json`, and PNG charts (learning curves of both stages, accuracy per type)."""

from __future__ import annotations

import json
from pathlib import Path


def table(suite: dict) -> str:
    model, blind = suite["model"], suite["blind"]
    rows = [f"{'question type':<14} {'n':>4} {'model':>7} {'blind':>7} {'gain':>7}"]
    for qtype, acc in model["per_type"].items():
        base = blind["per_type"].get(qtype, 0.0)
        rows.append(f"{qtype:<14} {model['count_per_type'][qtype]:>4} {acc:>7.3f} {base:>7.3f} {acc - base:>+7.3f}")
    rows.append(f"{'overall':<14} {sum(model['count_per_type'].values()):>4} "
                f"{model['overall']:>7.3f} {blind['overall']:>7.3f} {model['overall'] - blind['overall']:>+7.3f}")
    return "\n".join(rows)


def examples(out: Path, data_dir: Path, n: int = 6) -> list[dict]:
    """A few answers of the model and of the blind baseline to the same questions."""
    path_model, path_blind = out / "suite_model.jsonl", out / "suite_blind.jsonl"
    if not path_model.exists():
        return []
    model = [json.loads(x) for x in path_model.read_text().splitlines()]
    blind = {r["question_id"]: r for r in (json.loads(x) for x in path_blind.read_text().splitlines())}
    questions = {}
    for line in (data_dir / "eval" / "vqav2" / "llava_vqav2_mscoco_test-dev2015.jsonl").read_text().splitlines():
        q = json.loads(line)
        questions[q["question_id"]] = q
    step = max(1, len(model) // n)
    picked = model[::step][:n]
    return [{"question": questions[r["question_id"]]["text"].split("\n")[0],
             "image": questions[r["question_id"]]["image"], "type": r["type"],
             "model": r["answer"], "blind": blind[r["question_id"]]["answer"],
             "correct": r["accuracy"] > 0} for r in picked]


def accuracy_chart(suite: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = list(suite["model"]["per_type"])
    x = range(len(types))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar([i - 0.2 for i in x], [suite["model"]["per_type"][t] for t in types], 0.4, label="model")
    ax.bar([i + 0.2 for i in x], [suite["blind"]["per_type"].get(t, 0) for t in types], 0.4,
           label="blind (gray image)")
    ax.set_xticks(list(x))
    ax.set_xticklabels(types, rotation=30)
    ax.set_ylim(0, 1)
    ax.set_ylabel("VQA accuracy")
    ax.set_title("Held-out suite per question type")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(out: Path, suite: dict, timings: dict, data_dir: Path, plan: dict | None = None) -> dict:
    """`results.json`, the chart and the printed table; `plan` is the time budget's stage-2 plan
    (measured step time, steps, epochs) when the run had one."""
    results = {"accuracy": {"model": suite["model"], "blind": suite["blind"]},
               "seconds_per_stage": timings, "seconds_total": round(sum(timings.values()), 1),
               "examples": examples(out, data_dir)}
    if plan is not None:
        results["plan"] = plan
    (out / "results.json").write_text(json.dumps(results, indent=2))
    accuracy_chart(suite, out / "accuracy.png")
    print(table(suite))
    print("\nexamples (model | blind):")
    for e in results["examples"]:
        mark = "+" if e["correct"] else "-"
        print(f"  {mark} [{e['type']}] {e['question']}  ->  {e['model']!r} | {e['blind']!r}")
    print("\nseconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
          + f" (total {results['seconds_total']:.0f})")
    if plan is not None:
        print(f"time budget {plan['budget_s'] / 60:g} min: stage 2 measured at "
              f"{1000 * plan['step_s']:.0f} ms a step -> {plan['steps']} steps "
              f"({plan['epochs']:.2f} epochs)")
    print(f"results: {out / 'results.json'}; charts: {out / 'accuracy.png'}, "
          f"{out / 'pretrain'}/*.png, {out / 'finetune'}/*.png")
    return results


def ablation_table(summary: dict) -> str:
    """The variants side by side: accuracy overall and per type, and answer lengths."""
    types = sorted({t for r in summary.values() for t in r["per_type"]})
    rows = [f"{'variant':<38} {'overall':>7} " + " ".join(f"{t[:8]:>8}" for t in types)
            + f" {'words':>6} {'1-word':>6}"]
    for name, r in summary.items():
        rows.append(f"{name:<38} {r['overall']:>7.3f} "
                    + " ".join(f"{r['per_type'].get(t, 0):>8.3f}" for t in types)
                    + f" {r['answer_words_mean']:>6.2f} {r['single_word_share']:>6.2f}")
    return "\n".join(rows)
