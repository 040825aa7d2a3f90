"""Loading keeps peak memory near the loaded weights (at most 1.1x), in every inference precision:
measured in fresh processes by `bench/load_memory.py` on a small checkpoint of many layers."""

from __future__ import annotations

import pytest

from bench_scripts import load_bench

# the memory-mapped shards in both kinds of loading, and the converting read through a buffer
CASES = [("official .bin f16, 2 shards", "bfloat16"), ("official .bin f16, 2 shards", "int8"),
         ("llava-hf safetensors f32, 2 shards", "bfloat16")]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    bench = load_bench("load_memory")
    return bench, bench.write_checkpoints(tmp_path_factory.mktemp("load_memory"), layers=24)


@pytest.mark.parametrize("label,precision", CASES)
def test_peak_memory_within_1_1x_of_the_weights(checkpoints, label, precision):
    bench, directories = checkpoints
    result = bench.measure_in_subprocess(directories[label], precision)
    assert result["weights_mb"] > 30, result  # large enough that the ratio measures the loader
    assert result["ratio"] <= 1.1, result
