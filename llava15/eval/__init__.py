"""Evaluation: the twelve benchmarks' official question files, prompts and scoring rules.

`benchmarks.BENCHMARKS` maps each benchmark id to a module with `FILES`, `load(data_dir)`,
`score(answers, data_dir)` and, where a server scores the split, `write_submission(...)`.
`scoring` holds the rules shared by several benchmarks, `answers` reads answer files,
`judge` talks to a GPT judge for LLaVA-Bench and MM-Vet. Everything here except `harness`
is pure Python (no torch).
"""
