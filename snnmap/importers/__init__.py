"""Readers for model formats made elsewhere."""
