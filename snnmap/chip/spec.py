"""Every number of the target hardware lives here; presets are data (docs/chips.md gives sources)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from snnmap.errors import SnnmapError
from snnmap.io.files import require_regular


@dataclass(frozen=True)
class ChipSpec:
    name: str
    mesh_w: int  # cores per chip along x
    mesh_h: int  # cores per chip along y
    axons_per_core: int
    neurons_per_core: int
    fanin_max_level: int  # a neuron may join 2^L crossbar columns (dendrite combining), L <= this
    max_destinations: int  # per neuron
    threshold_bits: int  # signed two's complement
    axon_accumulates: bool  # events arriving at one axon in one tick add up (replicas share axons)
    weight_bits: int  # 1: crossbar bits, the sign is the axon's; 2: signed synapses (ternary in two's complement)
    multicast: bool  # a destination word may carry a replication mask: an aligned power-of-two block of cores
    reserved_corner: int  # cores with x and y >= mesh - this are not for inference (PAICORE's online cores)
    clock_hz: float
    energy_per_sop_j: float
    # latency and energy model (docs/chips.md: which are the paper's, assumed, or calibrated)
    cycles_per_event: float  # a core reads one crossbar row per input event
    cycles_per_neuron: float  # threshold and fire, per neuron per tick
    cycles_per_packet: float  # a router port serializes one packet
    cycles_per_hop: float  # router latency per mesh hop
    chip_link_hops: int  # a chip-to-chip link costs this many mesh hops
    energy_per_hop_j: float  # one packet over one hop
    static_power_w: float  # per chip
    chip_x_bits: int
    chip_y_bits: int
    core_x_bits: int
    core_y_bits: int
    axon_bits: int
    bank_bits: int  # selects one of the 2^L axon banks of a combined neuron
    # host-to-chip configuration bandwidth, bits per second (staged images pay reconfiguration with
    # it; an assumption, docs/chips.md). Defaulted so that images and chip files written before it
    # existed still load.
    config_bits_per_s: float = 64 * 252e6

    @property
    def cores_per_chip(self) -> int:
        return self.mesh_w * self.mesh_h

    @property
    def usable_cores(self) -> int:
        return self.cores_per_chip - self.reserved_corner ** 2

    @property
    def max_chips(self) -> int:
        """Chips addressable in a row (the board layout the simple placer uses)."""
        return 1 << self.chip_x_bits

    def axons_at(self, level: int) -> int:
        """Logical axons of a core whose neurons combine 2^level columns."""
        return self.axons_per_core << level

    def neurons_at(self, level: int) -> int:
        return self.neurons_per_core >> level

    @property
    def threshold_range(self) -> tuple[int, int]:
        return -(1 << (self.threshold_bits - 1)), (1 << (self.threshold_bits - 1)) - 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "ChipSpec":
        if not isinstance(d, dict):
            raise SnnmapError("chip spec is not a table", where=where)
        names = {f.name: f for f in fields(cls)}
        unknown = set(d) - set(names)
        if unknown:
            raise SnnmapError(f"unknown chip spec field(s) {sorted(unknown)}", where=where)
        vals = {}
        for name, f in names.items():
            if name not in d and name in OPTIONAL:
                continue
            if name not in d:
                raise SnnmapError(f"chip spec lacks field {name!r}", where=where)
            v = d[name]
            typ = {"str": str, "int": int, "float": float, "bool": bool}[f.type]
            if typ is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
                raise SnnmapError(f"chip spec field {name!r} is {v!r}, expected {f.type}", where=where)
            vals[name] = v
        spec = cls(**vals)
        spec.check(where)
        return spec

    def check(self, where: str) -> None:
        positive = ("mesh_w", "mesh_h", "axons_per_core", "neurons_per_core", "max_destinations",
                    "threshold_bits", "chip_x_bits", "chip_y_bits", "core_x_bits", "core_y_bits",
                    "axon_bits")
        if self.weight_bits not in (1, 2):
            raise SnnmapError(f"chip spec field 'weight_bits' = {self.weight_bits} must be 1 or 2", where=where)
        if not self.axon_accumulates and self.weight_bits < 2:
            raise SnnmapError("a chip whose axons OR spikes together needs weight_bits = 2 (signed synapses), "
                              "since each replica takes its own axon", where=where)
        if self.reserved_corner and not self.multicast:
            raise SnnmapError("reserved_corner needs multicast = true: only the multicast block placer "
                              "leaves the corner out", where=where)
        if not 0 <= self.reserved_corner <= min(self.mesh_w, self.mesh_h) - 1:
            raise SnnmapError(f"chip spec field 'reserved_corner' = {self.reserved_corner} is out of range "
                              f"0..{min(self.mesh_w, self.mesh_h) - 1}", where=where)
        if self.multicast and (self.mesh_w != 1 << self.core_x_bits or self.mesh_h != 1 << self.core_y_bits
                               or self.core_y_bits != self.core_x_bits
                               or self.reserved_corner & (self.reserved_corner - 1)):
            raise SnnmapError("multicast blocks need a square power-of-two mesh that fills the core address "
                              "bits, and a reserved corner of 0 or a power of two", where=where)
        for name in ("bank_bits", "fanin_max_level"):
            if not 0 <= getattr(self, name) <= 16:
                raise SnnmapError(f"chip spec field {name!r} = {getattr(self, name)} is out of range 0..16",
                                  where=where)
        for name in positive:
            v = getattr(self, name)
            if not 1 <= v <= 1 << 24:
                raise SnnmapError(f"chip spec field {name!r} = {v} is out of range 1..{1 << 24}",
                                  where=where)
        if self.threshold_bits > 32:
            raise SnnmapError(f"threshold_bits {self.threshold_bits} > 32", where=where)
        addr = (self.chip_x_bits + self.chip_y_bits + (self.core_x_bits + self.core_y_bits) * (1 + self.multicast)
                + self.axon_bits + self.bank_bits)
        if addr > 63:
            raise SnnmapError(f"spike address needs {addr} bits; snnmap's destination word holds 63",
                              where=where)
        if self.fanin_max_level > self.bank_bits:
            raise SnnmapError(f"fanin_max_level={self.fanin_max_level} needs bank_bits >= "
                              f"{self.fanin_max_level}, got {self.bank_bits}", where=where)
        if self.neurons_per_core >> self.fanin_max_level < 1:
            raise SnnmapError(f"fanin_max_level={self.fanin_max_level} leaves no neuron of "
                              f"neurons_per_core={self.neurons_per_core}", where=where)
        if self.cores_per_chip > MAX_CORES_PER_CHIP:
            raise SnnmapError(f"a {self.mesh_w}x{self.mesh_h} mesh has {self.cores_per_chip} cores, over the "
                              f"{MAX_CORES_PER_CHIP} snnmap places on one chip", where=where)
        if self.mesh_w > 1 << self.core_x_bits or self.mesh_h > 1 << self.core_y_bits:
            raise SnnmapError(f"a {self.mesh_w}x{self.mesh_h} mesh does not fit the core address bits",
                              where=where)
        if self.axons_per_core > 1 << self.axon_bits:
            raise SnnmapError(f"axons_per_core={self.axons_per_core} does not fit axon_bits={self.axon_bits}",
                              where=where)
        if not (1 <= self.clock_hz < 1e12 and 0 <= self.energy_per_sop_j < 1e12):  # inf: non-finite model figures
            raise SnnmapError(f"clock_hz = {self.clock_hz} must be in 1..1e12 and energy_per_sop_j = "
                              f"{self.energy_per_sop_j} a finite number >= 0", where=where)
        for name in ("cycles_per_event", "cycles_per_neuron", "cycles_per_packet", "cycles_per_hop",
                     "energy_per_hop_j", "static_power_w"):
            v = getattr(self, name)
            if not (0 <= v < 1e12):
                raise SnnmapError(f"chip spec field {name!r} = {v} must be a finite number >= 0", where=where)
        if not (1 <= self.config_bits_per_s < 1e18):
            raise SnnmapError(f"config_bits_per_s = {self.config_bits_per_s} must be a number in 1..1e18",
                              where=where)
        if not 1 <= self.chip_link_hops <= 1 << 16:
            raise SnnmapError(f"chip_link_hops = {self.chip_link_hops} is out of range 1..65536", where=where)


# The placers' time and memory grow with the board's cores (a 1024 x 1024 mesh took 35 s to place two
# tiles, a 2^24-core one ran out of memory); real chips have 64..1024 cores.
MAX_CORES_PER_CHIP = 1 << 16
MAX_BOARD_CORES = 1 << 20

# fields a spec may leave out (their defaults apply)
OPTIONAL = frozenset({"config_bits_per_s"})

# Fitted so that the published LeNet's modeled figures equal the paper's 0.38 ms and 0.28 mJ per
# image on MNIST (benchmarks/calibrate_cost.py prints them; docs/chips.md explains).
CALIBRATED_CYCLES_PER_EVENT = 4.1783
CALIBRATED_STATIC_POWER_W = 0.4965

SG64 = ChipSpec(
    name="sg64", mesh_w=8, mesh_h=8, axons_per_core=1024, neurons_per_core=1024,
    fanin_max_level=3, max_destinations=32, threshold_bits=20, axon_accumulates=True, clock_hz=252e6,
    energy_per_sop_j=2.64e-12, cycles_per_event=CALIBRATED_CYCLES_PER_EVENT, cycles_per_neuron=1.0,
    cycles_per_packet=1.0, cycles_per_hop=1.0, chip_link_hops=8, energy_per_hop_j=1e-12,
    static_power_w=CALIBRATED_STATIC_POWER_W, chip_x_bits=5, chip_y_bits=5, core_x_bits=5, core_y_bits=5,
    axon_bits=10, bank_bits=3, weight_bits=1, multicast=False, reserved_corner=0,
)

# PAICORE 2.0 as paicorelib 1.4 (HwParams) encodes it; docs/chips.md gives each number's source.
# Neurons per core: 512 / (2 bits x 2^LCN) for ternary weights; the latency/energy constants are
# sg64's (PAICORE publishes none that this model could use), stated as assumptions in the docs.
PAICORE2 = ChipSpec(
    name="paicore2", mesh_w=32, mesh_h=32, axons_per_core=1152, neurons_per_core=256,
    fanin_max_level=6, max_destinations=1, threshold_bits=29, axon_accumulates=False, clock_hz=252e6,
    energy_per_sop_j=2.64e-12, cycles_per_event=CALIBRATED_CYCLES_PER_EVENT, cycles_per_neuron=1.0,
    cycles_per_packet=1.0, cycles_per_hop=1.0, chip_link_hops=8, energy_per_hop_j=1e-12,
    static_power_w=CALIBRATED_STATIC_POWER_W, chip_x_bits=5, chip_y_bits=5, core_x_bits=5, core_y_bits=5,
    axon_bits=11, bank_bits=6, weight_bits=2, multicast=True, reserved_corner=4,
)

PRESETS = {"sg64": SG64, "paicore2": PAICORE2}


def get_chip(name: str) -> ChipSpec:
    if name in PRESETS:
        return PRESETS[name]
    raise SnnmapError(f"unknown chip {name!r}; presets: {', '.join(sorted(PRESETS))}")


def load_chip(value: str) -> ChipSpec:
    """A preset name, or a TOML file: optional `base = "<preset>"` plus fields that override it."""
    if value in PRESETS or not value.endswith(".toml"):
        return get_chip(value)
    import tomllib

    require_regular(value, "chip file")
    try:
        with open(value, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise SnnmapError(f"cannot read chip file: {e.strerror or e}", where=value) from None
    except tomllib.TOMLDecodeError as e:
        raise SnnmapError(f"not valid TOML: {e}", where=value) from None
    except UnicodeDecodeError as e:
        raise SnnmapError(f"not UTF-8 text at byte {e.start}", where=value) from None
    base = data.pop("base", "sg64")
    if not isinstance(base, str) or base not in PRESETS:
        raise SnnmapError(f"base {base!r} is not a preset ({', '.join(sorted(PRESETS))})", where=value)
    merged = {**PRESETS[base].to_dict(), "name": f"{base}-custom", **data}
    return ChipSpec.from_dict(merged, where=value)
