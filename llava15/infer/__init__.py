"""Inference: generation with a KV cache, and the engine behind chat, predict, eval and serve."""
