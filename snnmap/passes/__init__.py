"""Compiler passes, one module each, plain functions with explicit inputs and outputs."""
