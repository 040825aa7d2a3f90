"""The LLaVA-1.5 model in plain PyTorch: vision tower, projector, LLaMA decoder, merge."""
