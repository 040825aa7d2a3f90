"""The eval report: headline numbers read from each scorer's output, the paper's table, the chart."""

from __future__ import annotations

from llava15.eval.report import COLUMNS, PAPER, headline, markdown_table, radar_chart


def test_headlines_come_from_the_scorers_keys():
    assert headline("pope", {"splits": {"a": {"f1": 0.8}, "b": {"f1": 0.9}, "c": {"f1": 1.0}}}) == 90.0
    assert headline("gqa", {"accuracy": 0.5}) == 0.5  # already a percentage: never rescaled
    assert headline("mme", {"perception": 1510.7}) == 1510.7
    assert headline("sqa", {"img_acc": 66.8, "acc": 70.0}) == 66.8
    assert headline("llavabench", {"summary": {"all": {"relative": 65.4}}}) == 65.4
    assert headline("vqav2", {"server": "EvalAI", "answers": 3}) is None  # server-scored split


def test_table_has_the_papers_rows_and_ours_and_the_chart_is_written(tmp_path):
    table = markdown_table({"gqa": 50.17, "mme": 62.0}, "mine")
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(PAPER) + 1
    assert lines[-1].split(" | ")[COLUMNS.index("gqa") + 1] == "50.2"
    assert "| LLaVA-1.5-7B (paper) | 78.5 |" in table
    assert radar_chart({"gqa": 50.0}, tmp_path / "r.png").stat().st_size > 1000
