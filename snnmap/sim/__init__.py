"""The chip simulator: it reads only the configuration image."""
from snnmap.sim.simulator import Simulator, simulate_image

__all__ = ["Simulator", "simulate_image"]
