"""The one background producer thread (engine.background) and the decoder built on it."""

from __future__ import annotations

import threading

import pytest

from mgc.engine.background import background
from mgc.engine.prefetch import decoded_tracks

from .conftest import write_audio


def test_background_runs_ahead_keeps_order_and_reraises():
    produced = []

    def items():
        for i in range(6):
            produced.append(i)
            yield i

    assert list(background(items(), size=2)) == list(range(6))

    def broken():
        yield 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        list(background(broken(), size=2))
    before = threading.active_count()
    stream = background(iter(range(1000)), size=2)
    next(stream)
    stream.close()
    assert threading.active_count() <= before


def test_decoded_tracks_skips_what_the_consumer_leaves(tmp_path):
    paths = [write_audio(tmp_path / f"t{i}.wav", 3.0, seed=i) for i in range(3)]
    got = []
    for n, track in enumerate(decoded_tracks([(p.name, str(p)) for p in paths], 22050, depth=2)):
        blocks = track.blocks()
        first = next(blocks)
        got.append((track.item, first.shape[0]))
        if n != 1:  # abandon the middle track after its first block
            rest = sum(b.shape[0] for b in blocks)
            assert first.shape[0] + rest == 3 * 22050
    assert [item for item, _ in got] == ["t0.wav", "t1.wav", "t2.wav"]
    assert all(size > 0 for _, size in got)
