"""The binary configuration image: what the chip loads and the only thing the simulator reads."""
from snnmap.image.format import CoreImage, ChipImage, image_to_bytes, read_image, parse_image, write_image

__all__ = ["CoreImage", "ChipImage", "image_to_bytes", "read_image", "parse_image", "write_image"]
