"""Byte-level readers and writers shared by the model file and the image."""
