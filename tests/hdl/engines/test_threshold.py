"""OutputStage: thresholds and scores, bit-exact under random stalls (Amaranth simulator)."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hdl.engines.threshold import OutputStage, OutputStageSpec, range_shape
from sim import amsim


def _expected(acc, thresholds, bias):
    """acc: (vectors, channels). The IR rule: code = #{t : acc + bias >= t}."""
    total = acc + bias
    if thresholds is None:
        return total
    return (total[:, :, None] >= thresholds[None]).sum(axis=2)


def _simulate(stage: OutputStage, acc: np.ndarray, seed: int, gap=0.3, stall=0.3):
    beats = acc.reshape(-1, stage.pe)
    got, _ = amsim.simulate(stage, beats, len(beats), seed=seed, gap=gap, stall=stall)
    return np.array(got).reshape(acc.shape)


@pytest.mark.parametrize("channels,pe,bits,with_bias", [
    (6, 2, 2, False), (6, 3, 1, True), (4, 4, 3, True), (5, 1, 2, True),
])
@pytest.mark.parametrize("seed", [1, 2])
def test_thresholds_exact(channels, pe, bits, with_bias, seed):
    rng = np.random.default_rng(seed)
    acc_shape = signed(7)
    thresholds = np.sort(rng.integers(-80, 80, size=(channels, (1 << bits) - 1)), axis=1)
    bias = rng.integers(-20, 20, size=channels) if with_bias else None
    stage = OutputStage(channels, pe, acc_shape, thresholds=thresholds, bias=bias)
    acc = rng.integers(-64, 64, size=(9, channels))
    acc[0, : min(channels, thresholds.shape[1])] = thresholds[0, : min(channels, thresholds.shape[1])] \
        - (0 if bias is None else bias[0])  # land exactly on boundaries
    acc = np.clip(acc, -64, 63)  # stay inside acc_shape
    got = _simulate(stage, acc, seed)
    want = _expected(acc, thresholds, 0 if bias is None else bias)
    assert np.array_equal(got, want), f"seed {seed}"


@pytest.mark.parametrize("seed", [3, 4])
def test_scores_with_bias(seed):
    rng = np.random.default_rng(seed)
    bias = rng.integers(-300, 300, size=8)
    stage = OutputStage(8, 2, signed(6), bias=bias)
    assert stage.out_shape == range_shape(-32 + bias.min(), 31 + bias.max())
    acc = rng.integers(-32, 32, size=(7, 8))
    assert np.array_equal(_simulate(stage, acc, seed), acc + bias)


def test_range_shape():
    assert range_shape(-1, 0) == signed(1)
    assert range_shape(-128, 127) == signed(8)
    assert range_shape(0, 128) == signed(9)


@pytest.mark.parametrize("cls", [OutputStageSpec, OutputStage])
def test_bad_parameters(cls):
    with pytest.raises(ValueError, match="PE must divide the output channel count 6, not 4"):
        cls(6, 4, signed(8))
    with pytest.raises(TypeError, match="PE must be an integer"):
        cls(6, 1.5, signed(8))
    with pytest.raises(ValueError, match=r"thresholds must have shape \(4, 2\*\*bits - 1\)"):
        cls(4, 2, signed(8), thresholds=np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="non-decreasing"):
        cls(2, 1, signed(8), thresholds=np.array([[0, 5, 3], [1, 2, 3]]))
    with pytest.raises(ValueError, match="bias must be 4 integers"):
        cls(4, 2, signed(8), bias=np.zeros(3, dtype=np.int64))


def test_description():
    """Thresholds clipped to the accumulator's range with the bias folded in, output
    shapes and folds, without building the stage."""
    spec = OutputStageSpec(2, 1, signed(4), thresholds=np.array([[-100, 0, 100], [1, 2, 3]]),
                           bias=np.array([1, -1]))
    assert spec.thresholds.tolist() == [[-8, -1, 8], [2, 3, 4]]
    assert spec.out_shape == unsigned(2) and spec.folds == 2 and spec.latency == 2
    scores = OutputStageSpec(4, 2, signed(4), bias=np.array([0, 5, -9, 0]))
    assert scores.out_shape == range_shape(-8 - 9, 7 + 5)
