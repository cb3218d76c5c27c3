"""Chip descriptions: one spec object holds every hardware number."""
from snnmap.chip.spec import PRESETS, ChipSpec, get_chip, load_chip

__all__ = ["ChipSpec", "PRESETS", "get_chip", "load_chip"]
