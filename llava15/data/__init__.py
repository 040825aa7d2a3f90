"""The data layer: prompt templates, tokenizers, label masks and image preprocessing."""
