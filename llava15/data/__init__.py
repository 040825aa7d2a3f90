"""Data: image loading and preprocessing, conversations, tokenization, datasets and batching."""
