"""mgc report: every file, numbers that equal the store's, and memory bounded by the sample."""

from __future__ import annotations

import gc
import os
import re
import tracemalloc

import numpy as np

from tests.models.conftest import small_spec, write_tone_corpus


def _html_labels(text: str) -> dict[str, int]:
    table = text[text.index('<table id="labels">') : text.index("</table>", text.index('<table id="labels">'))]
    return {m[0]: int(m[1]) for m in re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td>", table)}


def test_a_report_of_a_store_and_a_model(tone_store, tone_model, tmp_path):
    from typer.testing import CliRunner

    from mgc.cli import app
    from mgc.engine import FeatureStore

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(tone_store), "--model", str(tone_model.folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    store = FeatureStore(tone_store)
    numbers = __import__("json").loads((out / "report.json").read_text())
    for name in ("balance", "durations", "mean_spectrum", "examples", "map", "model_f1", "confusion", "curves"):
        path = out / numbers["files"][name]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    text = (out / "index.html").read_text()
    assert "<script" not in text and all(f'src="{n}"' in text for n in numbers["files"].values())
    counts = np.bincount(store.tracks.label, minlength=len(store.label_names))
    assert _html_labels(text) == {str(n): int(c) for n, c in zip(store.label_names, counts)}
    assert f'<span id="tracks">{len(store)}</span>' in text
    assert numbers["hours"] == float(np.sum(store.tracks.duration) / 3600)
    assert numbers["model"]["metrics"]["n_tracks"] > 0


def test_memory_is_bounded_by_the_sample_not_the_store(tmp_path):
    """The same report of a store four times larger allocates about the same at its peak."""
    from mgc.engine import extract
    from mgc.models.tasks.report import report

    corpus = write_tone_corpus(tmp_path / "small", n_per_class=8, seconds=2.0)
    big = tmp_path / "big"
    for wav in corpus.rglob("*.wav"):
        (big / wav.parent.name).mkdir(parents=True, exist_ok=True)
        for copy in range(4):  # hard links: four times the tracks, the same disk
            os.link(wav, big / wav.parent.name / f"{wav.stem}-{copy}.wav")
    peaks = {}
    # The same number of shards (12) in both stores: what a shard costs to open is the same, and what
    # grows with the tracks is what the test is after. The sample is read in one pass either way.
    for name, source, shard_size in (("small", corpus, 2), ("big", big, 8)):
        extract(source, tmp_path / f"{name}-store", small_spec(), workers=1, shard_size=shard_size)
        report(tmp_path / f"{name}-store", tmp_path / f"{name}-warm", sample=12)  # imports, font caches
        gc.collect()  # what earlier tests left for the collector is not this report's
        tracemalloc.start()
        numbers = report(tmp_path / f"{name}-store", tmp_path / f"{name}-report", sample=12)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert numbers["sampled"] == 12
    assert numbers["tracks"] == 96
    assert peaks["big"] < 1.3 * peaks["small"], peaks
