"""What every stream driver shares, simulator-free: packing, stall patterns, checks.

The Amaranth-simulator drivers (:mod:`sim.amsim`), the cocotb agents (:mod:`sim.streams`)
and the AXI agents of the generated top (:mod:`sim.backend`, on cocotbext-axi) all use
these, so that a seed means the same stall pattern and a broken stream the same message
everywhere::

    word = pack([1, -2, 3], bits=4, lanes=3)        # lane 0 in the low bits
    unpack(word, bits=4, lanes=3, signed=True)      # -> [1, -2, 3]
    pause = pauses(seed, 0.3)                       # per cycle: True = hold back
    rule = HoldRule("o")                            # the stream rule, per cycle
    taken = rule.observe(valid, beat, ready)        # True on a transfer
    compare(got, want, seed=seed, what="mvtu")      # first mismatch, seed in the message
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

__all__ = ["pack", "unpack", "pauses", "ProtocolError", "HoldRule", "compare",
           "default_max_cycles"]


def pack(values: Iterable[int], bits: int, lanes: int) -> int:
    """Pack ``lanes`` integers into one ArrayLayout word, lane 0 in the low bits.

    Negative values are stored in two's complement; every value must fit in ``bits``
    bits as either unsigned or signed.
    """
    values = list(values)
    if len(values) != lanes:
        raise ValueError(f"expected {lanes} lane values, not {len(values)}")
    if bits <= 0:
        raise ValueError(f"bits must be positive, not {bits}")
    mask = (1 << bits) - 1
    word = 0
    for lane, v in enumerate(values):
        v = int(v)
        if not -(1 << (bits - 1)) <= v <= mask:
            raise ValueError(f"lane {lane} value {v} does not fit in {bits} bits")
        word |= (v & mask) << (lane * bits)
    return word


def unpack(word: int, bits: int, lanes: int, signed: bool = False) -> list[int]:
    """Split an ArrayLayout word into ``lanes`` integers (lane 0 from the low bits)."""
    word = int(word)
    if word < 0 or word >> (bits * lanes):
        raise ValueError(f"word {word:#x} does not fit in {lanes} lanes of {bits} bits")
    mask = (1 << bits) - 1
    out = []
    for lane in range(lanes):
        v = (word >> (lane * bits)) & mask
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


def pauses(seed: int | random.Random, prob: float) -> Iterator[bool]:
    """Endless per-cycle stall pattern: True with probability ``prob``, from ``seed``.

    A source offers no new beat in a cycle whose value is True (valid gaps); a sink
    holds ready low (backpressure). The iterator is also a cocotbext-axi pause
    generator. ``prob`` 0 gives a free-running stream.
    """
    if not 0 <= prob < 1:
        raise ValueError(f"stall probability must be in [0, 1), not {prob}")
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    if not prob:
        while True:
            yield False
    draw = rng.random
    while True:
        yield draw() < prob


class ProtocolError(AssertionError):
    """The DUT broke the stream rules (or a driver timed out waiting for it)."""


class HoldRule:
    """The stream rule, checked one cycle at a time: once valid is high, valid and the
    beat hold until a transfer (valid and ready in the same cycle).

    ``observe`` takes the sampled handshake of one cycle and returns True on a
    transfer; violations are appended to ``errors`` (prefixed with ``where``, e.g. a
    cycle number). ``names`` label the fields of tuple beats in the messages.
    """

    def __init__(self, name: str, names: Sequence[str] | None = None):
        self.name = name
        self.names = list(names) if names is not None else None
        self.errors: list[str] = []
        self._held = None

    def observe(self, valid: bool, beat, ready: bool, where: str = "") -> bool:
        held, self._held = self._held, None
        if not valid:
            if held is not None:
                self.errors.append(f"{where}valid dropped without a transfer")
            return False
        if held is not None and beat != held:
            self.errors.append(f"{where}payload changed while valid was held without a "
                               f"transfer ({self._diff(held, beat)})")
        if not ready:
            self._held = beat
            return False
        return True

    @property
    def holding(self) -> bool:
        """True while a beat offered without a transfer must stay."""
        return self._held is not None

    def forget(self) -> None:
        """Drop the held beat (after a reset, when valid may fall)."""
        self._held = None

    def _diff(self, a, b) -> str:
        if self.names and isinstance(a, tuple):
            return ", ".join(f"{n} {x:#x} -> {y:#x}" for n, x, y in zip(self.names, a, b)
                             if x != y)
        return f"{a!r} -> {b!r}"

    def check(self) -> None:
        """Raise :class:`ProtocolError` naming the first violations, if any."""
        if self.errors:
            more = f" (+{len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
            raise ProtocolError(f"{self.name}: stream protocol violated: "
                                + "; ".join(self.errors[:5]) + more)


def compare(got, want, *, seed: int, what: str,
            label: Callable[[int], str] | None = None) -> None:
    """Assert that the beats ``got`` equal ``want`` (sequences of ints or lane lists).

    The message names the seed, the first differing beat (``label(k)``, default
    ``"beat k"``) and both values.
    """
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise AssertionError(f"seed {seed}: {what}: {len(got)} beats of shape "
                             f"{got.shape[1:]}, expected {len(want)} of {want.shape[1:]}")
    bad = np.argwhere(got != want)
    if len(bad):
        k = int(bad[0][0])
        where = label(k) if label is not None else f"beat {k}"
        raise AssertionError(f"seed {seed}: {what}: {where} of {len(want)}: got "
                             f"{got[k].tolist()}, expected {want[k].tolist()}")


def default_max_cycles(n_in: int, n_out: int) -> int:
    """A generous timeout for a run of ``n_in`` input and ``n_out`` output beats."""
    return 50 * (n_in + n_out) + 200
