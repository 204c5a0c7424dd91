"""``mgc bench``: a real run on a small corpus (real decoders, real child processes, a real pool), its JSON and plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mgc.cli import app
from mgc.engine import EngineError, bench
from mgc.engine.bench.timing import round_robin

from .conftest import write_audio

runner = CliRunner()


def test_round_robin_warms_up_apart_shuffles_and_keeps_a_failing_case_as_a_row():
    calls = []
    cases = [(name, lambda name=name: calls.append(name)) for name in "abcd"]
    cases.append(("broken", lambda: 1 / 0))
    timings = round_robin(cases, repeat=8)
    # Warm-ups in order (the broken one fails there), then 8 rounds, each every case once.
    assert calls[:4] == list("abcd")
    rounds = [calls[4 + 4 * r : 8 + 4 * r] for r in range(8)]
    assert len(calls) == 4 + 32 and all(sorted(r) == list("abcd") for r in rounds)
    # No case always follows the same one (a fixed rotation would bias a case by its neighbour's leftovers).
    before = {name: {r[r.index(name) - 1] for r in rounds if r.index(name)} for name in "abcd"}
    assert all(len(v) >= 2 for v in before.values()), before
    assert [len(t.seconds) for t in timings] == [8, 8, 8, 8, 0]
    assert timings[4].error == "division by zero" and np.isnan(timings[4].median)
    assert all(t.median >= 0 and t.first >= 0 for t in timings[:4])
    calls.clear()
    round_robin(cases, repeat=8)
    assert [calls[4 + 4 * r : 8 + 4 * r] for r in range(8)] == rounds  # the same orders every run


def test_worker_and_peer_lists_are_checked():
    assert bench.parse_workers(None, 8) == [1, 8] and bench.parse_workers("2,1,N,2", 4) == [1, 2, 4]
    with pytest.raises(EngineError, match="1,2,N"):
        bench.parse_workers("1,two", 4)
    assert bench.parse_peers("all") == list(bench.PEERS)
    assert bench.parse_peers("LIBROSA,mgc") == ["mgc", "librosa"]
    with pytest.raises(EngineError, match="unknown peer essentai"):
        bench.parse_peers("essentai")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One real ``mgc bench --json --plot`` on three 4 s tracks (WAV, FLAC, stereo 44.1 kHz WAV), 1 and 2 workers."""
    root = tmp_path_factory.mktemp("bench")
    corpus = root / "corpus"
    write_audio(corpus / "a" / "one.wav", 4.0)
    write_audio(corpus / "a" / "two.flac", 4.0, seed=1)
    write_audio(corpus / "b" / "three.wav", 4.0, sr=44100, channels=2, seed=2)
    missing = next(
        (name for name in ("essentia", "torchaudio", "nnAudio") if importlib.util.find_spec(name) is None), None
    )
    peers = "librosa" + (f",{missing}" if missing else "")
    plot = root / "bench.png"
    args = ["bench", str(corpus), "--tracks", "3", "--repeat", "2", "--workers", "1,2", "--peers", peers]
    done = runner.invoke(app, [*args, "--json", "--plot", str(plot)])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout), plot, missing, args


def test_every_section_is_measured_with_rates_per_core_and_machine(measured):
    result, _plot, _missing, _args = measured
    assert result["format"] == "mgc-bench" and result["version"] == 1
    assert result["corpus"]["tracks"] == 3 and result["corpus"]["formats"] == {"wav": 2, "flac": 1}
    assert result["machine"]["cores"] >= 1 and "numpy" in result["machine"]["libraries"]
    rows = {row["name"]: row for row in result["rows"]}
    for name in ("decode wav", "decode flac", "power spectrogram", "log-mel", "mfcc", "mgc stft", "numpy.fft.rfft"):
        row = rows[name]
        assert row["seconds"] > 0 and row["error"] is None, row
        per_core, machine = row["per_core"], row["machine"]
        assert per_core["x_realtime"] == pytest.approx(row["audio_seconds"] / row["seconds"])
        assert machine["x_realtime"] == pytest.approx(per_core["x_realtime"] * result["machine"]["cores"])
    assert rows["decode wav"]["tracks"] == 2 and rows["decode wav"]["audio_seconds"] == pytest.approx(8.0, abs=0.01)
    [resample] = [row for name, row in rows.items() if name.startswith("resample wav 22050/44100->22050")]
    assert resample["tracks"] == 2 and resample["audio_seconds"] == pytest.approx(8.0, abs=0.01)
    # The clip is the first sampled track, at 22050 Hz: 4 s.
    assert rows["log-mel"]["audio_seconds"] == pytest.approx(4.0, abs=0.01)
    assert rows["copy of power spectrogram"]["bytes"] > 0
    # extract: every track stored at each count, as a user runs it and on a started pool.
    extract = [row for row in result["rows"] if row["section"] == "extract"]
    assert [(row["workers"], row["started_pool"]) for row in extract] == [(1, False), (2, False), (2, True)]
    for row in extract:
        assert row["tracks"] == 3 and row["audio_seconds"] == pytest.approx(12.0, abs=0.05)
        assert row["machine"]["tracks_per_s"] == pytest.approx(3 / row["seconds"])
        # Per core: per CPU second where measured (a worker decodes on a thread of its own), else per worker.
        share = row["cpu_seconds"] / row["seconds"] if row["cpu_seconds"] else row["workers"]
        assert row["per_core"]["tracks_per_s"] == pytest.approx(3 / row["seconds"] / share)
        assert (row["cpu_seconds"] is None) == row["started_pool"] and (row["cpu_seconds"] or 1) > 0


def test_peers_carry_their_parity_with_librosa_and_a_missing_one_says_how_to_install(measured):
    result, _plot, missing, _args = measured
    rows = {row["name"]: row for row in result["rows"] if row["section"] == "peers"}
    assert rows["librosa log-mel"]["parity"] == 0.0
    # mgc computes librosa's numbers: log-mel within 1e-3 dB, MFCC within 1e-3.
    assert rows["mgc log-mel"]["parity"] < 1e-3 and rows["mgc mfcc"]["parity"] < 1e-3
    assert rows["mgc log-mel"]["seconds"] > 0 and rows["librosa mfcc"]["seconds"] > 0
    if missing:
        assert rows[missing]["seconds"] is None and "pip install" in rows[missing]["error"]


def test_the_table_and_the_plot(measured, tmp_path):
    result, plot, _missing, args = measured
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from rich.console import Console

    from mgc.terminal import bench_tables

    console = Console(width=200, record=True)
    console.print(bench_tables(result))
    text = console.export_text()
    for heading in ("decode alone", "mgc's kernels", "by each peer", "float32 real FFTs", "extract end to end"):
        assert heading in text
    assert "fastest" in text and "GB/s" in text and "2 workers, started" in text
    # An existing file is never replaced by --plot; a name that is not .png is refused: one line each.
    for target, words in ((plot, "exists"), (tmp_path / "bench.jpg", "ending in .png")):
        before = target.read_bytes() if target.exists() else None
        with pytest.raises(EngineError, match=words):
            bench.plot(result, target)
        assert (target.read_bytes() if target.exists() else None) == before


def test_a_corpus_without_audio_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    done = runner.invoke(app, ["bench", str(tmp_path / "empty"), "--tracks", "1"])
    assert done.exit_code != 0 and "Traceback" not in done.output
    assert "error:" in done.output


def test_the_generated_corpus_holds_aac_that_decodes(tmp_path):
    from mgc.engine import open_audio
    from mgc.engine.bench import _generated_corpus

    [track] = _generated_corpus(tmp_path, 1, ("m4a",), lambda *a, **k: None)
    assert Path(track.path).suffix == ".m4a"
    decoded = np.concatenate(list(open_audio(track.path, 22050).blocks()))
    assert decoded.size == pytest.approx(30 * 22050, rel=0.01) and np.abs(decoded).max() > 0.01


def test_a_plot_that_would_replace_a_file_is_refused_before_anything_is_measured(tmp_path):
    existing = tmp_path / "mine.png"
    existing.write_bytes(b"the user's picture")
    done = runner.invoke(app, ["bench", str(tmp_path / "nowhere"), "--plot", str(existing)])
    # Refused on the plot, not on the missing corpus: the path is checked first.
    assert done.exit_code != 0 and "Traceback" not in done.output and "exists" in done.output, done.output
    assert existing.read_bytes() == b"the user's picture"
