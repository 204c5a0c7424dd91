"""Writing a synthetic corpus: track seeds, argument checks, audio files and the manifest.

Track ``i`` of genre ``g`` depends only on ``(seed, g, i)``, so corpora can be
made in parallel, in parts, or extended later, and stay bit-identical. The
layout follows GTZAN::

    OUT/manifest.csv              path,label,track_id (paths relative to OUT)
    OUT/synth.json                the settings; a rerun with other settings is refused
    OUT/blues/blues.00000.wav
    ...
"""

from __future__ import annotations

import csv
import json
import math
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import Executor, as_completed
from pathlib import Path

import numpy as np
import soundfile as sf

from mgc.engine.errors import MgcError
from mgc.engine.progress import ProgressCallback, Reporter
from mgc.kernels.validate import integer

from .render import render
from .styles import GENRES_TABLE

__all__ = ["FORMATS", "GENRES", "GENERATOR_VERSION", "SynthError", "make_corpus", "render_track", "track_seed"]

#: Bump when a change to the synthesis changes the audio, so old folders are not mixed with new tracks.
GENERATOR_VERSION = 1
#: The genre labels, in the order used for the manifest and for label indices.
GENRES: tuple[str, ...] = tuple(sorted(GENRES_TABLE))
#: Output formats: name -> (libsndfile container, subtype). 16-bit PCM for the lossless ones, as GTZAN.
FORMATS: dict[str, tuple[str, str]] = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
MANIFEST_NAME = "manifest.csv"
SPEC_NAME = "synth.json"
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


class SynthError(MgcError, ValueError):
    """A bad argument to the generator, or an output folder made with other settings."""


def _genre_key(genre: str) -> int:
    # A hash of the name, not its position in GENRES, so adding a genre never changes the others.
    return zlib.crc32(genre.encode("ascii"))


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    return integer(name, value, low, high, error=SynthError)


def _check_genre(genre) -> str:
    if genre not in GENRES_TABLE:
        raise SynthError(f"genre must be one of {', '.join(GENRES)}; got {genre!r}")
    return genre


def _check_signal_args(seconds, sr, channels) -> tuple[float, int, int]:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or not 0 < seconds <= 3600
    ):
        raise SynthError(f"seconds must be a number in (0, 3600], got {seconds!r}")
    sr = _check_int("sr", sr, 4000, 192000)
    channels = _check_int("channels", channels, 1, 2)
    return float(seconds), sr, channels


def track_seed(seed: int, genre: str, index: int) -> int:
    """The seed of track ``index`` of ``genre`` in a corpus made with ``seed``.

    ``render_track(genre, seed=track_seed(seed, genre, index), ...)`` gives the
    audio of ``OUT/genre/genre.{index:05d}.*`` before encoding.
    """
    seed = _check_int("seed", seed, 0)
    index = _check_int("index", index, 0)
    words = np.random.SeedSequence([seed, _genre_key(_check_genre(genre)), index]).generate_state(2, np.uint32)
    return int(words[0]) << 31 | int(words[1]) >> 1


def render_track(genre: str, *, seconds: float, sr: int, seed: int, channels: int = 1) -> np.ndarray:
    """Synthesise one track of ``genre``.

    Parameters
    ----------
    genre : str
        One of `GENRES`.
    seconds : float > 0
        Duration; the result has ``round(seconds * sr)`` samples.
    sr : int
        Sample rate in Hz (4000 to 192000).
    seed : int >= 0
        The same (genre, seed) gives the same track, at any ``sr`` and ``channels``.
    channels : {1, 2}
        Stereo pans the parts apart and adds independent noise, so the channels differ.

    Returns
    -------
    y : np.ndarray [shape=(n_samples,) if channels == 1 else (n_samples, channels), dtype=float32]
        Audio with peak below 1.
    """
    genre = _check_genre(genre)
    seconds, sr, channels = _check_signal_args(seconds, sr, channels)
    seed = _check_int("seed", seed, 0)
    y = render(genre, seconds=seconds, sr=sr, channels=channels, seed_key=(seed, _genre_key(genre)))
    return y[:, 0] if channels == 1 else y


def _check_format(format: str, sr: int) -> tuple[str, str]:
    if format not in FORMATS:
        raise SynthError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    container, subtype = FORMATS[format]
    if container not in sf.available_formats() or not sf.check_format(container, subtype):
        raise SynthError(
            f"format {format!r} is not available in this libsndfile ({sf.__libsndfile_version__}); "
            "MP3 needs libsndfile >= 1.1. Use wav, flac or ogg instead."
        )
    if format == "mp3" and sr not in _MP3_RATES:
        raise SynthError(f"sr={sr} cannot be written as mp3; MPEG allows {', '.join(map(str, _MP3_RATES))}")
    return container, subtype


def _check_spec(out_dir: Path, spec: dict) -> None:
    """Refuse to mix tracks made with different settings in one folder."""
    path = out_dir / SPEC_NAME
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SynthError(f"cannot read {path} ({exc}); delete it or use another folder") from exc
        if old != spec:
            changed = ", ".join(f"{k}={old.get(k)!r} (now {v!r})" for k, v in spec.items() if old.get(k) != v)
            raise SynthError(
                f"{out_dir} was made with other settings: {changed}; use another folder or the same settings"
            )
        return
    tmp = path.with_name(f".{SPEC_NAME}.partial")
    tmp.write_text(json.dumps(spec, indent=2) + "\n")
    os.replace(tmp, path)


def _write_track(
    path: str, genre: str, seed: int, seconds: float, sr: int, channels: int, container: str, subtype: str
) -> str:
    y = render_track(genre, seconds=seconds, sr=sr, seed=seed, channels=channels)
    final = Path(path)
    # Written under a temporary name and renamed, so a file that exists is complete.
    tmp = final.with_name(f".{final.name}.partial")
    sf.write(tmp, y, sr, format=container, subtype=subtype)
    os.replace(tmp, final)
    return path


def make_corpus(
    out_dir: str | os.PathLike,
    *,
    tracks_per_genre: int = 10,
    seconds: float = 30.0,
    seed: int = 0,
    format: str = "wav",
    sr: int = 22050,
    channels: int = 1,
    genres: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> Path:
    """Write a synthetic corpus in the folder-per-genre layout and its manifest.

    Parameters
    ----------
    out_dir : path
        Created if missing. Files already there from an earlier run with the
        same settings are kept, not rewritten (so an interrupted run resumes).
    tracks_per_genre : int >= 1
    seconds : float > 0
        Duration of every track.
    seed : int >= 0
        Track ``i`` of genre ``g`` depends only on ``(seed, g, i)``.
    format : {'wav', 'flac', 'ogg', 'mp3'}
        WAV and FLAC are 16-bit PCM; OGG is Vorbis; MP3 needs libsndfile >= 1.1.
    sr : int
        Sample rate in Hz.
    channels : {1, 2}
    genres : sequence of str, optional
        A subset of `GENRES` (default: all).
    progress : callable, optional
        Receives :class:`engine.ProgressEvent` values of task ``"synth"``
        counting ``"tracks"``: ``start`` (``done`` counts the files already
        complete), an ``update`` after each track written, and ``end``.
    executor : concurrent.futures.Executor, optional
        Renders tracks in parallel (e.g. a ``ProcessPoolExecutor``); the files
        are identical to a serial run.

    Returns
    -------
    manifest : Path
        ``out_dir / 'manifest.csv'`` with columns ``path,label,track_id``,
        one row per track of this call, paths relative to ``out_dir``.
    """
    tracks_per_genre = _check_int("tracks_per_genre", tracks_per_genre, 1)
    seconds, sr, channels = _check_signal_args(seconds, sr, channels)
    seed = _check_int("seed", seed, 0)
    container, subtype = _check_format(format, sr)
    if genres is None:
        genres = GENRES
    elif isinstance(genres, str) or not genres or len(set(genres)) != len(genres):
        raise SynthError(f"genres must be a non-empty list of distinct names from {', '.join(GENRES)}; got {genres!r}")
    genres = tuple(_check_genre(g) for g in genres)

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for genre in genres:
            (out / genre).mkdir(exist_ok=True)
    except OSError as exc:
        raise SynthError(f"cannot create out_dir {str(out)!r}: {exc}") from exc
    spec = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "seconds": seconds,
        "sr": sr,
        "channels": channels,
        "format": format,
    }
    _check_spec(out, spec)

    rows, jobs = [], []
    for genre in genres:
        for index in range(tracks_per_genre):
            name = f"{genre}.{index:05d}"
            path = out / genre / f"{name}.{format}"
            rows.append((f"{genre}/{name}.{format}", genre, name))
            if not path.exists():
                jobs.append(
                    (str(path), genre, track_seed(seed, genre, index), seconds, sr, channels, container, subtype)
                )
    total, done = len(rows), len(rows) - len(jobs)
    report = Reporter(progress, "synth", "tracks")
    report("start", done, total)
    if executor is None:
        for job in jobs:
            _write_track(*job)
            done += 1
            report("update", done, total)
    else:
        for future in as_completed([executor.submit(_write_track, *job) for job in jobs]):
            future.result()
            done += 1
            report("update", done, total)
    report("end", done, total)

    manifest = out / MANIFEST_NAME
    tmp = manifest.with_name(f".{MANIFEST_NAME}.partial")
    with open(tmp, "w", newline="", encoding="ascii") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("path", "label", "track_id"))
        writer.writerows(rows)
    os.replace(tmp, manifest)
    return manifest
