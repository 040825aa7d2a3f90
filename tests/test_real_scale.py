"""`bench/real_scale.py` end to end on the tiny checkpoint of `bench/make_checkpoint.py`: every case
(ours in bfloat16 and int8, transformers in bfloat16 through `llava15 convert`) in its own process,
the figures finite and positive, and the requested number of tokens produced."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from bench_scripts import BENCH, load_bench

NEW_TOKENS = 3


@pytest.fixture(scope="module")
def bench():
    return load_bench("real_scale")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_scale")
    written = load_bench("make_checkpoint").main(["--shape", "tiny", "--out", str(root), "--no-progress"])
    out = root / "result.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "real_scale.py"), "--model", str(written.llava_dir), "--hf-dir",
         str(root / "hf"), "--cases", "ours-bf16,ours-int8,transformers-bf16", "--new-tokens", str(NEW_TOKENS),
         "--threads", "1", "--bandwidth-gb", "0.1", "--case-timeout", "120", "--json", str(out)],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    data["stdout"] = proc.stdout
    data["root"] = root
    return data


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_every_row_has_finite_positive_figures(result):
    assert positive(result["bandwidth_gb_s"])
    rows = {r["case"]: r for r in result["rows"]}
    assert list(rows) == ["ours-bf16", "ours-int8", "transformers-bf16"]
    for case, row in rows.items():
        assert "error" not in row and not row.get("timed_out"), (case, row.get("error"))
        for key in ("load_s", "rss_after_load_gb", "rss_after_gen_gb", "ttft_s", "decode_b1_tok_s",
                    "decode_b8_tok_s", "decode_weight_gb", "bound_b1_tok_s", "bound_b8_tok_s"):
            assert positive(row[key]), (case, key, row[key])
        assert row["rss_after_gen_gb"] >= row["rss_after_load_gb"]
        assert row["b1_tokens"] == NEW_TOKENS and row["b8_steps"] == 8
        assert row["b8_tokens_per_row"] == [8] * 8
        assert len(row["b1_token_ids"]) == NEW_TOKENS
    # int8 decoder linears: fewer bytes read per decode step than bfloat16
    assert rows["ours-int8"]["decode_weight_gb"] < rows["ours-bf16"]["decode_weight_gb"]


def test_conversion_cached_and_table_printed(result):
    assert result["conversion"]["cached"] is False and positive(result["conversion"]["convert_s"])
    assert (result["root"] / "hf" / "config.json").is_file()
    assert not (result["root"] / "hf.partial").exists()
    out = result["stdout"]
    assert "| case | load s |" in out and "| ours-int8 |" in out and "| transformers-bf16 |" in out
    assert "target <= 15 GB" in out and "TTFT: transformers-bf16" in out


def test_summarize_partial_events(bench):
    """A case killed mid-way reports what it measured: here the load and three batch-1 tokens."""
    raw = {"case": "transformers-bf16", "load_s": 2.0, "peak_after_load": 3e9, "decode_weight_bytes": 2e9,
           "b1_times": [10.0, 12.0, 14.0], "timed_out": True}
    row = bench.summarize(raw, bandwidth=20.0)
    assert row["ttft_s"] == 10.0 and row["decode_b1_tok_s"] == pytest.approx(0.5)
    assert row["bound_b1_tok_s"] == pytest.approx(10.0) and row["bound_b8_tok_s"] == pytest.approx(80.0)
    assert row["decode_b8_tok_s"] is None and row["rss_after_gen_gb"] is None and row["timed_out"]
    assert "(timed out)" in bench.table([row])[2]
    assert bench.decode_rate([1.0]) is None and bench.decode_rate([1.0, 2.0, 3.0], 8) == pytest.approx(8.0)
