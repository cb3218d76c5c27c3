"""Design rules: each failure names the layer, the tile or neuron, the limit and the value."""

import numpy as np
import pytest

from snnmap.chip.spec import SG64, ChipSpec
from snnmap.errors import DesignRuleError, SnnmapError
from snnmap.pipeline import compile_model

from test_image import small_model


def spec(**kw):
    return ChipSpec(**{**SG64.to_dict(), **kw})


def test_fan_in_over_axons():
    with pytest.raises(DesignRuleError, match=r"layer 'conv1', channel \d+: one neuron needs \d+ axons.*"
                                              r"axons_per_core=20 x 2\^fanin_max_level=0 = 20"):
        compile_model(small_model(), spec(axons_per_core=20, fanin_max_level=0))


def test_replicas_over_neurons():
    with pytest.raises(DesignRuleError, match="neurons_per_core=3"):
        compile_model(small_model(), spec(neurons_per_core=3, fanin_max_level=0))


def test_fan_out_over_destinations():
    """Copies would not fit the producer's cores: the error names both layers and the limits."""
    with pytest.raises(DesignRuleError, match=r"layer 'fc': every tile shape gives the neurons of layer 'conv1' "
                                              r"more fan-out copies .*max_destinations=1, neurons_per_core=8"):
        compile_model(small_model(), spec(max_destinations=1, neurons_per_core=8))


def test_fan_out_rule_on_tiles():
    """The rule itself, on a tiling made for a chip with more destinations."""
    from snnmap.convert import convert
    from snnmap.passes import drc
    from snnmap.passes.tiling import tile_network

    g = convert(small_model())
    tiling = tile_network(g, spec(neurons_per_core=8))
    with pytest.raises(DesignRuleError, match=r"layer 'conv1', neuron \(h=\d+, w=\d+, c=\d+\): \d+ "
                                              r"destinations in layer 'fc' over the limit max_destinations=1 x 1 "
                                              r"copies"):
        drc.check_fan_out(g, tiling, spec(max_destinations=1))


def test_threshold_bits():
    with pytest.raises(DesignRuleError, match="threshold_bits=2"):
        compile_model(small_model(), spec(threshold_bits=2))


def test_board_too_small():
    with pytest.raises(DesignRuleError, match=r"needs at least \d+ spiking neurons .* over the limit of 16 on 2 chips"):
        compile_model(small_model(), spec(mesh_w=1, mesh_h=1, chip_x_bits=1, neurons_per_core=8))


def test_multi_chip_board_when_needed():
    result = compile_model(small_model(), spec(mesh_w=2, mesh_h=2, neurons_per_core=8))
    assert result.placement.chips == -(-len(result.image.cores) // 4) > 1


def test_bad_spec_values():
    with pytest.raises(SnnmapError, match="axon_bits"):
        ChipSpec.from_dict({**SG64.to_dict(), "axons_per_core": 4096}, "x")
    with pytest.raises(SnnmapError, match="unknown"):
        ChipSpec.from_dict({**SG64.to_dict(), "speed": 1}, "x")
    with pytest.raises(SnnmapError, match="lacks"):
        ChipSpec.from_dict({k: v for k, v in SG64.to_dict().items() if k != "mesh_w"}, "x")
    assert np.isfinite(SG64.clock_hz)


def test_dendrite_combining_maps_wide_fan_in():
    """conv1 needs up to 36 axons per neuron: with 16 axons per column it takes 4 combined columns."""
    from snnmap.image import image_to_bytes, parse_image
    from snnmap.reference import evaluate
    from snnmap.sim import Simulator

    model = small_model()
    result = compile_model(model, spec(axons_per_core=16, neurons_per_core=64, fanin_max_level=2))
    levels = {c.level for c in result.image.cores}
    assert max(levels) == 2
    x = np.random.default_rng(3).integers(0, 256, (30, 8, 8)).astype(np.uint8)
    out = Simulator(parse_image(image_to_bytes(result.image))).run(x)
    assert np.array_equal(out["pred"], evaluate(model, x)["pred"])

