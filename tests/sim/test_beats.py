"""sim.beats: the stall patterns, the stream rule and the beat comparison that every
driver (Amaranth simulator, cocotb, cocotbext-axi) shares."""

import itertools
import random

import pytest

from sim.beats import HoldRule, ProtocolError, compare, pauses


def test_pauses_are_seeded_and_have_the_asked_rate():
    a = list(itertools.islice(pauses(3, 0.3), 20000))
    b = list(itertools.islice(pauses(random.Random(3), 0.3), 20000))
    assert a == b
    assert abs(sum(a) / len(a) - 0.3) < 0.02
    assert not any(itertools.islice(pauses(3, 0.0), 1000))
    with pytest.raises(ValueError, match=r"stall probability must be in \[0, 1\), not 1"):
        next(pauses(1, 1))


def test_hold_rule_accepts_a_held_beat_and_counts_transfers():
    rule = HoldRule("o")
    cycles = [(1, 5, 0), (1, 5, 0), (1, 5, 1), (0, None, 1), (1, 6, 1)]
    taken = [rule.observe(v, b, r) for v, b, r in cycles]
    assert taken == [False, False, True, False, True]
    rule.check()


def test_hold_rule_catches_a_change_and_a_drop():
    rule = HoldRule("m_axis", ["tdata", "tlast"])
    rule.observe(1, (5, 0), 0, "cycle 1: ")
    rule.observe(1, (7, 0), 0, "cycle 2: ")
    rule.observe(0, None, 1, "cycle 3: ")
    assert rule.errors == [
        "cycle 2: payload changed while valid was held without a transfer (tdata 0x5 -> 0x7)",
        "cycle 3: valid dropped without a transfer"]
    with pytest.raises(ProtocolError, match="m_axis: stream protocol violated: cycle 2"):
        rule.check()


def test_hold_rule_forgets_after_reset():
    rule = HoldRule("o")
    rule.observe(1, 1, 0)
    assert rule.holding
    rule.forget()
    rule.observe(0, None, 1)
    assert rule.errors == []


def test_compare_names_seed_and_first_bad_beat():
    compare([[1, 2], [3, 4]], [[1, 2], [3, 4]], seed=1, what="x")
    with pytest.raises(AssertionError, match=r"seed 4: mvtu: vector 1 of 3: got \[5\], expected \[6\]"):
        compare([[1], [5], [7]], [[1], [6], [8]], seed=4, what="mvtu",
                label=lambda k: f"vector {k}")
    with pytest.raises(AssertionError, match="seed 2: x: 1 beats"):
        compare([1], [1, 2], seed=2, what="x")
