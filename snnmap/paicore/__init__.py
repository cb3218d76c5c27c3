"""PAICORE 2.0 configuration frames: encoder, decoder and directory export (docs/paicore.md)."""
