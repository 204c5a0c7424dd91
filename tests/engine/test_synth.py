"""Tests for engine.synth: determinism, formats, manifest, genre differences, resume, errors, CLI."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mgc.engine.synth import FORMATS, GENRES, SynthError, make_corpus, render_track, track_seed

SR = 8000


def _digests(folder) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _available(fmt: str) -> bool:
    container, subtype = FORMATS[fmt]
    return container in sf.available_formats() and sf.check_format(container, subtype)


def test_genres_and_render_shapes():
    assert len(GENRES) >= 6
    for genre in GENRES:
        y = render_track(genre, seconds=1.5, sr=SR, seed=1)
        assert y.shape == (int(1.5 * SR),) and y.dtype == np.float32
        assert np.all(np.isfinite(y)) and 0.05 < np.max(np.abs(y)) < 1.0
    stereo = render_track("rock", seconds=1.5, sr=SR, seed=1, channels=2)
    assert stereo.shape == (int(1.5 * SR), 2)
    assert not np.allclose(stereo[:, 0], stereo[:, 1])


def test_render_is_deterministic_and_seeded():
    a = render_track("jazz", seconds=2.0, sr=SR, seed=7)
    assert np.array_equal(a, render_track("jazz", seconds=2.0, sr=SR, seed=7))
    assert not np.array_equal(a, render_track("jazz", seconds=2.0, sr=SR, seed=8))
    assert track_seed(0, "jazz", 3) == track_seed(0, "jazz", 3) != track_seed(0, "jazz", 4)
    assert track_seed(0, "jazz", 3) != track_seed(0, "rock", 3) != track_seed(1, "rock", 3)


def test_corpus_bit_identical_and_seed_dependent(tmp_path):
    kwargs = dict(tracks_per_genre=2, seconds=1.0, sr=SR, genres=["metal", "ambient"])
    make_corpus(tmp_path / "a", seed=3, **kwargs)
    make_corpus(tmp_path / "b", seed=3, **kwargs)
    make_corpus(tmp_path / "c", seed=4, **kwargs)
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b
    audio = [k for k in a if k.endswith(".wav")]
    assert len(audio) == 4 and all(a[k] != c[k] for k in audio)


def test_partial_and_subset_runs_match_full_run(tmp_path):
    make_corpus(tmp_path / "full", tracks_per_genre=2, seconds=1.0, sr=SR, genres=["disco", "reggae"])
    make_corpus(tmp_path / "part", tracks_per_genre=2, seconds=1.0, sr=SR, genres=["reggae"])
    full, part = _digests(tmp_path / "full"), _digests(tmp_path / "part")
    for name in ("reggae/reggae.00000.wav", "reggae/reggae.00001.wav"):
        assert full[name] == part[name]
    y, _ = sf.read(tmp_path / "full" / "disco" / "disco.00001.wav", dtype="float32")
    expected = render_track("disco", seconds=1.0, sr=SR, seed=track_seed(0, "disco", 1))
    np.testing.assert_allclose(y, expected, atol=1 / 32767 + 1e-6)  # 16-bit PCM rounding


def test_manifest(tmp_path):
    manifest = make_corpus(tmp_path, tracks_per_genre=2, seconds=0.5, sr=SR, genres=["blues", "rock"])
    assert manifest == tmp_path / "manifest.csv"
    with open(manifest, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label", "track_id"]
    assert rows[1:] == [[f"{g}/{g}.{i:05d}.wav", g, f"{g}.{i:05d}"] for g in ("blues", "rock") for i in range(2)]
    for path, label, _ in rows[1:]:
        assert (tmp_path / path).is_file() and path.split("/")[0] == label
    assert not list(tmp_path.rglob(".*partial"))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("sr,channels", [(22050, 1), (16000, 2)])
def test_formats_rates_channels(tmp_path, fmt, sr, channels):
    if not _available(fmt):
        with pytest.raises(SynthError, match="format"):
            make_corpus(tmp_path, tracks_per_genre=1, seconds=1.0, sr=sr, channels=channels, format=fmt)
        pytest.skip(f"{fmt} not available in this libsndfile")
    make_corpus(tmp_path, tracks_per_genre=1, seconds=1.0, sr=sr, channels=channels, format=fmt, genres=["electronic"])
    y, file_sr = sf.read(tmp_path / "electronic" / f"electronic.00000.{fmt}", always_2d=True)
    assert file_sr == sr and y.shape[1] == channels
    # Lossy codecs may pad by up to a frame or two; lossless ones are exact.
    tolerance = 0 if fmt in ("wav", "flac") else 0.1 * sr
    assert abs(y.shape[0] - sr) <= tolerance
    assert np.max(np.abs(y)) > 0.05


@pytest.mark.parametrize("fmt", ["ogg", "mp3"])
def test_lossy_formats_decode_identically(tmp_path, fmt):
    if not _available(fmt):
        pytest.skip(f"{fmt} not available in this libsndfile ({sf.__libsndfile_version__})")
    decoded = []
    for run in ("a", "b"):
        make_corpus(tmp_path / f"{fmt}{run}", tracks_per_genre=1, seconds=1.0, sr=SR, format=fmt, genres=["jazz"])
        decoded.append(sf.read(tmp_path / f"{fmt}{run}" / "jazz" / f"jazz.00000.{fmt}")[0])
    assert decoded[0].size > 0
    np.testing.assert_array_equal(*decoded)


def _centroid(y: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(y.size, 1 / sr)
    return float((spectrum * freqs).sum() / spectrum.sum())


def _onset_contrast(y: np.ndarray, sr: int) -> float:
    """Coefficient of variation of spectral flux: high for drum hits, low for held pads."""
    hop = 256
    frames = np.lib.stride_tricks.sliding_window_view(y, 1024)[::hop]
    mag = np.log1p(10 * np.abs(np.fft.rfft(frames * np.hanning(1024), axis=1)))
    flux = np.maximum(np.diff(mag, axis=0), 0).sum(axis=1)
    return float(flux.std() / flux.mean())


def test_genres_differ_in_simple_features():
    sr = 16000

    def features(genre):
        tracks = [render_track(genre, seconds=4.0, sr=sr, seed=track_seed(0, genre, i)) for i in range(4)]
        return np.array([_centroid(y, sr) for y in tracks]), np.array([_onset_contrast(y, sr) for y in tracks])

    ambient_centroid, ambient_onsets = features("ambient")
    metal_centroid, metal_onsets = features("metal")
    classical_centroid, _ = features("classical")
    _, electronic_onsets = features("electronic")
    _, reggae_onsets = features("reggae")
    # Distorted guitars are brighter than pads (in every track) and than orchestras (on average:
    # a bright harpsichord piece may overlap a dark metal one, as in real music).
    assert metal_centroid.min() > ambient_centroid.max()
    assert metal_centroid.mean() > 1.2 * classical_centroid.mean()
    # Drum machines and skanks are spiky; slow pads swell smoothly.
    assert electronic_onsets.min() > ambient_onsets.max()
    assert reggae_onsets.min() > ambient_onsets.max()
    assert metal_onsets.mean() > ambient_onsets.mean()


def test_rerun_skips_complete_files_and_refuses_other_settings(tmp_path):
    make_corpus(tmp_path, tracks_per_genre=1, seconds=0.5, sr=SR, genres=["hiphop", "rock"])
    kept = tmp_path / "hiphop" / "hiphop.00000.wav"
    kept.write_bytes(b"sentinel")  # a complete file is never rewritten, whatever it holds
    calls = []
    make_corpus(
        tmp_path,
        tracks_per_genre=2,
        seconds=0.5,
        sr=SR,
        genres=["hiphop", "rock"],
        progress=lambda event: calls.append((event.kind, event.done, event.total)),
    )
    assert kept.read_bytes() == b"sentinel"
    assert calls[0] == ("start", 2, 4) and calls[-1] == ("end", 4, 4)
    assert [c[1] for c in calls[1:-1]] == [3, 4]
    assert (tmp_path / "rock" / "rock.00001.wav").is_file()
    with pytest.raises(SynthError, match="seconds"):
        make_corpus(tmp_path, tracks_per_genre=1, seconds=1.0, sr=SR, genres=["rock"])


def test_executor_gives_identical_files(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    kwargs = dict(tracks_per_genre=2, seconds=0.5, sr=SR, genres=["blues", "classical"])
    make_corpus(tmp_path / "serial", **kwargs)
    with ThreadPoolExecutor(2) as pool:
        make_corpus(tmp_path / "pool", executor=pool, **kwargs)
    assert _digests(tmp_path / "serial") == _digests(tmp_path / "pool")


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(tracks_per_genre=0), "tracks_per_genre"),
        (dict(seconds=0), "seconds"),
        (dict(seconds=float("nan")), "seconds"),
        (dict(seed=-1), "seed"),
        (dict(format="aiff"), "format"),
        (dict(sr=100), "sr"),
        (dict(channels=3), "channels"),
        (dict(genres=["polka"]), "genre"),
        (dict(genres=[]), "genres"),
        (dict(genres="rock"), "genres"),
        (dict(format="mp3", sr=8001), "sr=8001"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(SynthError, match=name):
        make_corpus(tmp_path, **kwargs)
    assert issubclass(SynthError, ValueError)


def test_synth_error_is_an_mgc_error():
    from mgc.engine import MgcError

    # The CLI catches MgcError once; callers that expect a ValueError still get one.
    assert issubclass(SynthError, MgcError) and issubclass(SynthError, ValueError)


def test_public_api_and_engine_does_not_import_the_generator():
    import subprocess
    import sys

    import mgc.engine.synth  # noqa: F401
    from mgc import engine

    assert sorted(engine.synth.__all__) == sorted(
        ["FORMATS", "GENERATOR_VERSION", "GENRES", "SynthError", "make_corpus", "render_track", "track_seed"]
    )
    assert all(hasattr(engine.synth, name) for name in engine.synth.__all__)
    # Extraction workers import engine; they must not pay for scipy.signal (the generator's import).
    probe = (
        "import sys; from mgc import engine; print('mgc.engine.synth' in sys.modules, 'scipy.signal' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
    assert not {"make_corpus", "SynthError", "SYNTH_GENRES"} & set(engine.__all__)


def test_render_track_bad_arguments():
    with pytest.raises(SynthError, match="genre"):
        render_track("polka", seconds=1.0, sr=SR, seed=0)
    with pytest.raises(SynthError, match="seed"):
        render_track("rock", seconds=1.0, sr=SR, seed=1.5)


def test_cli(tmp_path):
    from mgc.cli import app

    runner = CliRunner()
    out = tmp_path / "corpus"
    result = runner.invoke(
        app,
        [
            "synth",
            "--out",
            str(out),
            "--tracks-per-genre",
            "1",
            "--duration",
            "0.5",
            "--sr",
            str(SR),
            "--channels",
            "2",
            "--format",
            "flac",
            "--genres",
            "jazz,metal",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "manifest.csv" in result.output
    assert sf.info(str(out / "metal" / "metal.00000.flac")).channels == 2
    with open(out / "manifest.csv") as f:
        assert len(f.read().splitlines()) == 3

    bad = runner.invoke(app, ["synth", "-o", str(tmp_path / "x"), "--channels", "5"])
    assert bad.exit_code == 2
    assert "channels" in bad.output and "Traceback" not in bad.output
