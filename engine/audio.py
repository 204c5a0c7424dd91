"""Decoding any audio file to mono float32 blocks at the spec's rate.

soundfile (libsndfile) decodes, channels are mixed to mono by their mean and
soxr resamples with its "HQ" quality in streaming mode, so a worker's memory
does not grow with the length of a track. Streaming soxr gives the same
samples as ``soxr.resample`` on the whole signal (what ``librosa.load`` does).
``offset``/``duration`` follow ``librosa.load``: the window starts at
``int(offset * source_rate)`` and spans ``int(duration * source_rate)`` frames.

A file is checked as soon as it is opened, before any sample is read: its rate,
channel count and the length of the window to use must be within ``MIN_SR`` to
``MAX_SR``, ``MAX_CHANNELS`` and ``MAX_TRACK_SECONDS``, so that a hostile or
broken header (1 Hz, 1,024 channels, days of audio) is a failed track with a
reason instead of gigabytes of resampler output, read buffer or features.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import numpy as np
import soundfile
import soxr

from .corpus import AUDIO_EXTENSIONS
from .errors import AudioError

__all__ = ["AudioStream", "BLOCK_FRAMES", "MIN_SR", "MAX_SR", "MAX_CHANNELS", "MAX_TRACK_SECONDS"]

# Source frames decoded per read: about 6 s at 44.1 kHz, a few MB of memory.
# Files with more than two channels read fewer frames at a time (the buffer
# holds at most 2 * BLOCK_FRAMES samples, 2 MB, whatever the channel count).
BLOCK_FRAMES = 1 << 18
# Source sample rates accepted, in Hz (inclusive). Below, the resampler's output
# explodes (1 Hz to 22,050 Hz turns 300,000 samples into 6.6 billion, 26 GB);
# above, no real recording exists (768 kHz is the highest rate audio interfaces offer).
MIN_SR = 1_000
MAX_SR = 768_000
# Channels accepted: more is not music (a 1,024-channel file needs a 1 GiB read buffer).
MAX_CHANNELS = 64
# Longest window (after offset/duration) used per track, in seconds: a track's
# features are held in memory until it is written, and 3 h at 22,050 Hz, hop 512,
# 148 bins (128 mels + 20 MFCC) in float32 is about 275 MB per worker.
MAX_TRACK_SECONDS = 3 * 3600.0
# What libsndfile reports when a header does not say how long the stream is
# (e.g. a FLAC written to a pipe): the length is then known only by decoding.
_UNKNOWN_FRAMES = 2**63 - 1
# Formats whose header states an exact length: a shortfall means the file was cut.
_PCM_FORMATS = {"WAV", "WAVEX", "RF64", "W64", "AIFF", "AU", "CAF", "NIST", "IRCAM"}
# MPEG decoders may legitimately deliver up to one frame fewer than counted.
_MP3_SLACK = 1152


def _mix_to_mono(frames: np.ndarray) -> np.ndarray:
    """Mean over channels of ``frames [shape=(n, channels)]``, as ``librosa.to_mono``.

    Rows are added in order then divided by the count, like numpy's mean over the
    leading axis of librosa's ``(channels, n)`` array (so the bits agree), and ten
    times faster than ``frames.mean(axis=1)``, which reduces a length-2 axis per row.
    """
    mono = frames[:, 0].copy()
    for channel in range(1, frames.shape[1]):
        mono += frames[:, channel]
    if frames.shape[1] > 1:
        mono /= np.float32(frames.shape[1])
    return mono


def _check_path(path: str) -> None:
    """Classify the problems visible before decoding (missing, directory, ...)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise AudioError("missing", path) from None
    except PermissionError as exc:
        raise AudioError("permission", path, exc.strerror or "") from None
    except OSError as exc:
        raise AudioError("unreadable", path, exc.strerror or str(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise AudioError("is_directory", path)
    if not stat.S_ISREG(info.st_mode):
        raise AudioError("not_a_file", path)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError as exc:
        raise AudioError("permission", path, exc.strerror or "") from None
    except OSError as exc:
        raise AudioError("unreadable", path, exc.strerror or str(exc)) from None
    if info.st_size == 0:
        raise AudioError("empty", path)


def _seconds(seconds: float) -> str:
    """``seconds`` as a short human reading: "3.0 s", "2.25 h"."""
    return f"{seconds / 3600:,.2f} h" if seconds >= 3600 else f"{seconds:,.1f} s"


def _too_long(path: str, what: str) -> AudioError:
    return AudioError(
        "too_long",
        path,
        f"{what} {_seconds(MAX_TRACK_SECONDS)}; set a duration (e.g. --duration 600)"
        " to use only the start of each track",
    )


def _check_format(path: str, handle: soundfile.SoundFile) -> None:
    """Refuse rates and channel counts whose buffers would explode, before any read."""
    rate, channels = handle.samplerate, handle.channels
    if rate < MIN_SR:
        raise AudioError("bad_sample_rate", path, f"sample rate {rate:,} Hz is below {MIN_SR:,} Hz")
    if rate > MAX_SR:
        raise AudioError("bad_sample_rate", path, f"sample rate {rate:,} Hz is above {MAX_SR:,} Hz")
    if channels > MAX_CHANNELS:
        raise AudioError("too_many_channels", path, f"{channels:,} channels is more than {MAX_CHANNELS}")


def _open(path: str) -> soundfile.SoundFile:
    _check_path(path)
    try:
        handle = soundfile.SoundFile(os.fsencode(path))  # bytes: names that are not UTF-8 open too
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
        kind = "unreadable" if ext in AUDIO_EXTENSIONS else "unsupported"
        detail = str(getattr(exc, "error_string", "") or exc)
        for shown in (repr(path), repr(os.fsencode(path))):
            detail = detail.replace(f"Error opening {shown}: ", "")
        raise AudioError(kind, path, detail) from None
    log = handle.extra_info or ""
    if handle.format in _PCM_FORMATS and "should be" in log:
        handle.close()
        raise AudioError("truncated", path, "the data chunk is shorter than its header says")
    if "Junk after the last page" in log:
        handle.close()
        raise AudioError("corrupt", path, "damaged Ogg pages")
    try:
        _check_format(path, handle)
    except AudioError:
        handle.close()
        raise
    return handle


class AudioStream:
    """Mono float32 audio at ``sr``, decoded and resampled block by block.

    Parameters
    ----------
    path : str
        Audio file.
    sr : int
        Target sample rate.
    offset, duration : float, optional
        Start (s) and length (s) of the window to read, as ``librosa.load``.
    block_frames : int
        Source frames per decoded block (bounds memory).

    Attributes
    ----------
    source_sr, source_channels : int
        Properties of the file.
    source_frames : int
        Frames the window should hold, at the source rate. When the header does
        not state the file's length (``length_known`` is False), an upper bound:
        the window's frames if ``duration`` is given, else one more than
        ``MAX_TRACK_SECONDS`` allows.
    length_known : bool
        Whether the header states how many frames the file holds.

    Raises
    ------
    AudioError
        On open (missing, unreadable, bad_sample_rate, too_many_channels,
        too_long, ...) or while iterating (corrupt, non_finite, too_long when
        the length was unknown).
    """

    def __init__(self, path, sr: int, *, offset=None, duration=None, block_frames: int = BLOCK_FRAMES) -> None:
        self.path = str(path)
        self.sr = sr
        self.block_frames = block_frames
        self._file = _open(self.path)
        self.source_sr = self._file.samplerate
        self.source_channels = self._file.channels
        self._declared = self._file.frames
        self.length_known = 0 <= self._declared < _UNKNOWN_FRAMES
        start = int((offset or 0.0) * self.source_sr)
        # Frames of the longest window allowed: an unknown length is never trusted,
        # decoding stops one frame past the limit and reports the track as too long.
        self._max_frames = int(MAX_TRACK_SECONDS * self.source_sr)
        available = max(0, self._declared - start) if self.length_known else self._max_frames + 1
        self.source_frames = available if duration is None else min(available, int(duration * self.source_sr))
        if self.source_frames <= 0:
            self.close()
            where = f" after offset {offset} s" if start else ""
            raise AudioError("no_samples", self.path, f"{self._declared} frames in the file{where}")
        if self.length_known and self.source_frames > self._max_frames:
            self.close()
            what = "the window to use" if start or duration is not None else "the file"
            raise _too_long(self.path, f"{what} lasts {_seconds(self.source_seconds)}, more than the limit of")
        if start:
            try:
                self._file.seek(start)
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                self.close()
                raise AudioError("corrupt", self.path, f"cannot seek to {offset} s: {exc}") from None

    @property
    def source_seconds(self) -> float:
        """Length of the window in seconds."""
        return self.source_frames / self.source_sr

    def close(self) -> None:
        """Release the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield mono float32 blocks at ``sr``; closes the file when done.

        Yields
        ------
        np.ndarray [shape=(n,), dtype=float32]
        """
        resampler = None
        if self.source_sr != self.sr:
            resampler = soxr.ResampleStream(self.source_sr, self.sr, 1, dtype="float32", quality="HQ")
        remaining = self.source_frames
        flushed = resampler is None
        per_read = max(1, min(self.block_frames, 2 * self.block_frames // self.source_channels))
        buffer = np.empty((min(per_read, remaining), self.source_channels), dtype=np.float32)
        try:
            while remaining > 0:
                want = min(per_read, remaining)
                try:
                    got = self._file.read(frames=want, dtype="float32", always_2d=True, out=buffer[:want])
                except (soundfile.LibsndfileError, RuntimeError) as exc:
                    raise AudioError("corrupt", self.path, f"decoder error: {exc}") from None
                n = got.shape[0]
                if n == 0:
                    break
                remaining -= n
                if not self.length_known and self.source_frames - remaining > self._max_frames:
                    what = "the header does not state the length and the audio goes on past the limit of"
                    raise _too_long(self.path, what)
                if not np.isfinite(got).all():
                    raise AudioError("non_finite", self.path)
                mono = _mix_to_mono(got)
                last = remaining <= 0 or n < want
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                    flushed = last
                if mono.size:
                    yield mono
                if n < want:
                    break
            if not flushed:
                tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                if tail.size:
                    yield tail
            slack = _MP3_SLACK if self._file.format in ("MP3", "MPEG") else 0
            if self.length_known and remaining > slack:
                kind = "truncated" if self._file.format in _PCM_FORMATS else "corrupt"
                raise AudioError(
                    kind, self.path, f"decoded {self.source_frames - remaining} of {self.source_frames} frames"
                )
        finally:
            self.close()
