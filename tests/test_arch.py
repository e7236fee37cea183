"""The edge net's builder: the stems issue 34 compares at equal cost, and the names old runs load by."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras", reason="model_export's Keras extra is not installed (pip install -e .[export])")

from model_export.arch import STEMS, build_model  # noqa: E402


def _layer_types(model) -> dict[str, str]:
    return {layer.name: type(layer).__name__ for layer in model.layers}


def test_the_double_stem_keeps_the_layer_names_every_earlier_run_was_saved_with():
    """Resuming last.keras and --init-from load by layer name: the default net must not change them."""
    m = build_model(48, width=0.875)
    types = _layer_types(m)
    assert m.name == "edgenet_48_w0.875"
    assert types["stem_conv"] == types["stem_conv2"] == "Conv2D" and "stem_bn2" in types
    assert m.count_params() == 295_431  # the parameter count train printed for edgenet48_w875_kd7


def test_each_stem_builds_the_net_it_names_and_reads_a_face():
    nets = {stem: build_model(48, width=1.0, stem=stem) for stem in STEMS}
    assert _layer_types(nets["separable"])["stem_conv2"] == "SeparableConv2D"
    assert "stem_conv2" not in _layer_types(nets["single"]) and "stem_bn2" not in _layer_types(nets["single"])
    assert [nets[s].name for s in STEMS] == ["edgenet_48_w1", "edgenet_48_w1_separable", "edgenet_48_w1_single"]
    # the second stem layer is what they differ by: 32*32*9 weights, 32*9 + 32*32, none
    double, sep, single = (nets[s].count_params() for s in STEMS)
    assert double - single == 32 * 32 * 9 + 4 * 32 and sep - single == 32 * 9 + 32 * 32 + 4 * 32
    face = np.random.default_rng(0).random((2, 48, 48, 1), np.float32)
    for net in nets.values():
        p = np.asarray(net(face, training=False))
        assert p.shape == (2, 7) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_an_unknown_stem_is_refused_by_name():
    with pytest.raises(ValueError, match="stem 'triple': expected one of double, separable, single"):
        build_model(48, stem="triple")
