"""Decoding what libsndfile cannot read, with FFmpeg (through PyAV), and choosing the decoder per file.

PyAV's wheels carry FFmpeg itself, so ``pip install mgc`` decodes AAC and ALAC in
MP4/M4A, ADTS AAC, WMA, Opus and Vorbis in WebM/Matroska, MP2, AMR, AC-3 and the
audio of video files with no system library. soundfile stays first for what it
reads (:func:`open_audio`); :class:`FFmpegStream` takes the rest with the same
interface and guarantees as :class:`~mgc.engine.audio.AudioStream`:

- the first audio stream of the container is decoded (a video file's soundtrack),
  and which one is recorded (``stream_index``, ``codec``, ``container_format``);
- packets are demuxed and decoded one at a time, so memory does not grow with the
  track; frames are converted to float32 ``(n, channels)`` (FFmpeg's float formats
  directly, any other sample format through ``av.AudioResampler(format="flt")``,
  which changes the format only, never the rate), mixed to mono by
  :func:`~mgc.engine.audio.mix_to_mono` and resampled by soxr's "HQ" streaming
  resampler, exactly as AudioStream does;
- ``offset``/``duration`` follow ``librosa.load``: decoding starts at the beginning
  of the stream, ``int(offset * source_sr)`` frames are dropped and
  ``int(duration * source_sr)`` kept (exact, no seek to a keyframe);
- rate, channels and the declared length are checked before any sample is decoded;
  a length the container does not state is capped at ``MAX_TRACK_SECONDS``;
- failures are classified into the existing kinds with FFmpeg's own words, and
  FFmpeg's log never reaches the terminal: PyAV forwards it (errors only) into a
  per-call ``av.logging.Capture``, where it serves as the failure's evidence.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import av
import av.logging
import numpy as np
import soxr

from . import audio
from .audio import (
    BLOCK_FRAMES,
    AudioStream,
    check_on_corrupt,
    check_path,
    format_seconds,
    keep_or_raise,
    mix_to_mono,
    too_long_error,
)
from .corpus import FFMPEG_EXTENSIONS
from .errors import AudioError

__all__ = ["FFmpegStream", "open_audio"]

# Words of FFmpeg's messages that say the file stops early (as opposed to damage inside it).
_CUT_WORDS = ("moov atom not found", "ended prematurely", "partial file", "truncat", "end of file")
# Samples of planar float frames gathered before they are mixed to mono at once (per-frame numpy calls cost
# more than the decoding of an MP3 frame of 1,152 samples).
_GROUP_FRAMES = 1 << 15
# Kinds soundfile gives a file it cannot open at all: FFmpeg is tried next (an Ogg with a Theora video stream).
_FALLBACK_KINDS = ("unreadable", "unsupported")
_logging_ready = False


def _quiet_ffmpeg() -> None:
    """Route FFmpeg's log (errors only) into PyAV's captures; nothing of it is printed (idempotent)."""
    global _logging_ready
    if _logging_ready:
        return
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # a repeat is held back and later lands in another file's capture
    # A message outside any capture (a decoder thread of FFmpeg's own) goes to Python's logging:
    # never to the terminal through logging's last-resort handler.
    logger = logging.getLogger("libav")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    _logging_ready = True


def _said(logs: list, limit: int = 3) -> str:
    """FFmpeg's messages, short: "aac: invalid band type; ..." (repeats once, at most ``limit``)."""
    picked: list = []
    for _level, name, message in logs:
        text = message.strip().rstrip(".")
        name = name.split(",")[0]  # "mov,mp4,m4a,3gp,3g2,mj2" -> "mov"
        line = f"{name}: {text}" if name else text
        if text and line not in picked:
            picked.append(line)
    return "; ".join(picked[:limit])


def _words(exc: BaseException) -> str:
    """An FFmpeg error without the path it quotes: "Invalid data found when processing input"."""
    return str(getattr(exc, "strerror", "") or type(exc).__name__)


def _open_container(path: str):
    """``(container, file or None)``: ``av.open`` of the path; a name that is not UTF-8 opens through a file object."""
    try:
        return av.open(path, metadata_errors="ignore"), None
    except UnicodeEncodeError:
        handle = open(os.fsencode(path), "rb")  # noqa: SIM115 (closed with the stream)
        try:
            return av.open(handle, metadata_errors="ignore"), handle
        except BaseException:
            handle.close()
            raise


class FFmpegStream:
    """Mono float32 audio at ``sr`` from the first audio stream of any container FFmpeg opens.

    The interface of :class:`~mgc.engine.audio.AudioStream`.

    Parameters
    ----------
    path : str
        Audio (or video) file.
    sr : int
        Target sample rate.
    offset, duration : float, optional
        Start (s) and length (s) of the window to read, as ``librosa.load``.
    block_frames : int
        Mono frames (at the source rate) gathered per resampled block (bounds memory).
    on_corrupt : {"skip", "keep"}
        ``skip``: a stream damaged part-way raises AudioError ``corrupt``. ``keep``: a
        packet that fails to decode is left out and decoding goes on with the next
        (FFmpeg resyncs), and ``damage`` says what was left out.

    Attributes
    ----------
    source_sr, source_channels : int
        Properties of the audio stream.
    source_frames : int
        Frames the window should hold, at the source rate, from the duration the
        container declares (an estimate: containers state a duration, not an exact
        count of decoded frames). When it states none (``length_known`` is False),
        an upper bound as AudioStream's.
    length_known : bool
        Whether the container or stream declares a duration.
    stream_index : int
        Index of the decoded stream in the container (the first audio stream).
    codec, container_format : str
        FFmpeg's names of the stream's codec ("aac") and of the container ("mov,mp4,m4a,3gp,3g2,mj2").
    damage : str or None
        With ``on_corrupt="keep"``, after ``blocks()``: what was damaged (as a
        ``corrupt`` error would state it, with the number of packets left out);
        None when the stream decoded cleanly.

    Raises
    ------
    AudioError
        On open (missing, unreadable, unsupported, truncated, bad_sample_rate,
        too_many_channels, too_long, ...) or while iterating (corrupt, truncated,
        non_finite, no_samples, too_long).
    """

    def __init__(
        self, path, sr: int, *, offset=None, duration=None, block_frames: int = BLOCK_FRAMES, on_corrupt: str = "skip"
    ) -> None:
        _quiet_ffmpeg()
        self.path = str(path)
        self.sr = sr
        self.block_frames = block_frames
        self.on_corrupt = check_on_corrupt(on_corrupt)
        self.damage = None
        self._left_out = 0  # packets that failed to decode and were left out (on_corrupt="keep")
        self._container = self._handle = None
        self._offset = offset
        check_path(self.path)
        with av.logging.Capture() as logs:
            try:
                self._container, self._handle = _open_container(self.path)
            except (av.FFmpegError, OSError, ValueError) as exc:
                raise self._open_failure(exc, logs) from None
        try:
            self._setup(offset, duration)
        except BaseException:
            self.close()
            raise

    def _open_failure(self, exc: BaseException, logs: list) -> AudioError:
        said = _said(logs) or _words(exc)
        try:
            with open(self.path, "rb") as handle:
                head = handle.read(12)
        except OSError:
            head = b""
        if "moov atom not found" in said and head[4:8] == b"ftyp":  # an MP4 whose index (at the end) is cut away
            return AudioError("truncated", self.path, f"the MP4 index (moov atom) is missing, the file was cut; {said}")
        return AudioError("unreadable", self.path, f"FFmpeg cannot open the container: {said}")

    def _setup(self, offset, duration) -> None:
        container = self._container
        self.container_format = container.format.name
        if not container.streams.audio:
            held = ", ".join(
                f"{s.type} ({s.codec_context.name if s.codec_context else '?'})" for s in container.streams
            )
            raise AudioError(
                "unsupported", self.path, "no audio stream" + (f" (the file holds: {held})" if held else "")
            )
        stream = self._stream = container.streams.audio[0]
        self.stream_index = stream.index
        context = stream.codec_context
        self.codec = context.name if context is not None else "?"
        if context is None or not self.codec or self.codec == "none":
            raise AudioError("unsupported", self.path, f"FFmpeg has no decoder for the audio stream {stream.index}")
        rate, channels = context.sample_rate or 0, context.channels or 0
        if rate <= 0 or channels <= 0:
            raise AudioError("unreadable", self.path, f"the {self.codec} stream states no sample rate or channels")
        if rate < audio.MIN_SR:
            raise AudioError("bad_sample_rate", self.path, f"sample rate {rate:,} Hz is below {audio.MIN_SR:,} Hz")
        if rate > audio.MAX_SR:
            raise AudioError("bad_sample_rate", self.path, f"sample rate {rate:,} Hz is above {audio.MAX_SR:,} Hz")
        if channels > audio.MAX_CHANNELS:
            raise AudioError("too_many_channels", self.path, f"{channels:,} channels is more than {audio.MAX_CHANNELS}")
        self.source_sr, self.source_channels = rate, channels
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration:
            seconds = container.duration / av.time_base
        else:
            seconds = None
        self.length_known = seconds is not None and seconds > 0
        self._declared = int(seconds * rate) if self.length_known else 0
        self._start = int((offset or 0.0) * rate)
        self._want = None if duration is None else int(duration * rate)
        self._max_frames = int(audio.MAX_TRACK_SECONDS * rate)
        available = max(0, self._declared - self._start) if self.length_known else self._max_frames + 1
        self.source_frames = available if self._want is None else min(available, self._want)
        if self._want is not None and self._want <= 0:
            raise AudioError("no_samples", self.path, f"a duration of {duration} s holds no frame")
        if self.length_known and self.source_frames > self._max_frames:
            what = "the window to use" if self._start or duration is not None else "the file"
            raise too_long_error(
                self.path, f"{what} lasts {format_seconds(self.source_seconds)}, more than the limit of"
            )

    @property
    def source_seconds(self) -> float:
        """Length of the window in seconds."""
        return self.source_frames / self.source_sr

    def close(self) -> None:
        """Release the file (idempotent)."""
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _frames(self) -> Iterator[np.ndarray]:
        """Decoded frames of the stream, mixed to mono (float32 ``[shape=(n,)]``), packet by packet.

        One packet is read ahead, so that a decoding error in the file's last packet
        (a cut file) is told from one inside it (damage).
        """
        packets = self._container.demux(self._stream)
        converter = None
        gathered: list[list[np.ndarray]] = []  # per channel, the planes of the frames not yet mixed
        held = 0

        def mixed() -> Iterator[np.ndarray]:
            """The gathered frames mixed to mono as mix_to_mono does (the channels' sum over their count)."""
            nonlocal held
            if not held:
                return
            channels = [np.concatenate(planes) if len(planes) > 1 else planes[0].copy() for planes in gathered]
            mono = channels[0]
            for other in channels[1:]:
                mono += other
            if len(channels) > 1:
                mono /= np.float32(len(channels))
            for planes in gathered:
                planes.clear()
            held = 0
            yield mono

        def read(logs):
            try:
                return next(packets, None)
            except (av.FFmpegError, OSError) as exc:  # the demuxer failed: nothing more can be read
                keep_or_raise(self, self._failure(exc, logs, last=False))
                return None

        with av.logging.Capture() as logs:
            packet = read(logs)
        self._logs.extend(logs)
        while packet is not None:
            with av.logging.Capture() as logs:  # one capture a packet: reading the next, decoding this one
                following = None
                try:
                    following = read(logs)
                    frames = packet.decode()
                except (av.FFmpegError, OSError) as exc:
                    keep_or_raise(self, self._failure(exc, logs, last=following is None or following.size == 0))
                    self._left_out += 1
                    frames = ()
                finally:
                    self._logs.extend(logs)
            for frame in frames:
                if frame.sample_rate != self.source_sr:
                    raise AudioError(
                        "corrupt", self.path, f"the sample rate changes from {self.source_sr} to {frame.sample_rate} Hz"
                    )
                self._decoded += frame.samples
                name = frame.format.name
                if name == "fltp":  # one buffer per channel: gathered, then mixed a group of frames at a time
                    n, planes = frame.samples, frame.planes
                    if len(planes) != len(gathered):
                        yield from mixed()
                        gathered[:] = [[] for _ in planes]
                    for channel, plane in zip(gathered, planes):
                        channel.append(np.frombuffer(plane, np.float32, n))  # a view: it keeps the frame alive
                    held += n
                    if held >= _GROUP_FRAMES:
                        yield from mixed()
                    continue
                yield from mixed()
                if name == "flt":
                    yield mix_to_mono(frame.to_ndarray().reshape(-1, frame.layout.nb_channels))
                else:  # integer or double samples: FFmpeg's own conversion to float, same rate
                    if converter is None:
                        converter = av.AudioResampler(format="flt", layout=frame.layout.name, rate=frame.sample_rate)
                    for converted in converter.resample(frame):
                        yield mix_to_mono(converted.to_ndarray().reshape(-1, converted.layout.nb_channels))
            packet = following
        yield from mixed()
        if converter is not None:
            for converted in converter.resample(None):
                yield mix_to_mono(converted.to_ndarray().reshape(-1, converted.layout.nb_channels))

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield mono float32 blocks at ``sr``; closes the file when done.

        Yields
        ------
        np.ndarray [shape=(n,), dtype=float32]
        """
        self._logs: list = []
        self._position = 0  # frames of the stream handed on so far
        self._decoded = 0  # frames of the stream decoded so far (some may wait to be mixed)
        kept = 0
        resampler = None
        if self.source_sr != self.sr:
            resampler = soxr.ResampleStream(self.source_sr, self.sr, 1, dtype="float32", quality="HQ")
        start, want = self._start, self._want
        pending: list = []
        gathered = 0
        try:
            for samples in self._frames():
                n = samples.shape[0]
                begin, self._position = self._position, self._position + n
                if self._position <= start:
                    continue
                if begin < start:
                    samples = samples[start - begin :]
                if want is not None and kept + samples.shape[0] > want:
                    samples = samples[: want - kept]
                kept += samples.shape[0]
                if want is None and kept > self._max_frames:
                    what = "the audio goes on past the limit of"
                    raise too_long_error(self.path, what)
                if not np.isfinite(samples).all():
                    raise AudioError("non_finite", self.path)
                pending.append(samples)
                gathered += samples.size
                done = want is not None and kept >= want
                if gathered >= self.block_frames and not done:
                    block = np.concatenate(pending) if len(pending) > 1 else pending[0]
                    pending, gathered = [], 0
                    if resampler is not None:
                        block = resampler.resample_chunk(block, last=False)
                    if block.size:
                        yield block
                if done:
                    break
            if kept == 0:
                where = f" after offset {self._offset} s" if start else ""
                raise AudioError("no_samples", self.path, f"{self._position} frames in the stream{where}")
            if not (want is not None and kept >= want):
                self._check_end()
            block = np.concatenate(pending) if pending else np.zeros(0, np.float32)
            if resampler is not None:
                block = resampler.resample_chunk(block, last=True)
            if block.size:
                yield block
        finally:
            self.close()

    def _check_end(self) -> None:
        """After the last packet: what FFmpeg reported on the way decides (a cut file, damage, or nothing)."""
        said = _said(self._logs)
        if not said:
            return
        at = format_seconds(self._decoded / self.source_sr)
        of = f" of {format_seconds(self._declared / self.source_sr)}" if self.length_known else ""
        if any(word in said.lower() for word in _CUT_WORDS):
            raise AudioError("truncated", self.path, f"the audio stops at {at}{of}; FFmpeg {said}")
        if self.on_corrupt != "keep":
            raise AudioError("corrupt", self.path, f"decoded {at}{of}; FFmpeg {said}")
        left_out = f"{self._left_out} packet{'s' if self._left_out != 1 else ''} left out; " if self._left_out else ""
        self.damage = f"decoded {at}{of}; {left_out}FFmpeg {said}"

    def _failure(self, exc: BaseException, logs: list, *, last: bool) -> AudioError:
        """Why decoding raised after ``self._position`` frames: in the file's last packet, a cut file."""
        said = _said(self._logs + list(logs)) or _words(exc)
        at = format_seconds(self._decoded / self.source_sr)
        of = f" of {format_seconds(self._declared / self.source_sr)}" if self.length_known else ""
        if last or any(word in said.lower() for word in _CUT_WORDS):
            return AudioError(
                "truncated", self.path, f"the audio stops at {at}{of}, in a cut last packet; FFmpeg {said}"
            )
        return AudioError("corrupt", self.path, f"decoding failed at {at}{of}: FFmpeg {said}")


class _ResyncingAudioStream(AudioStream):
    """soundfile's stream whose kept damage (``on_corrupt="keep"``) FFmpeg decodes past."""

    def _decode_rest(self, decoded: int) -> Iterator[np.ndarray]:
        """Mono blocks at the source rate of the window after its first ``decoded`` frames, by FFmpeg.

        FFmpeg's decoders skip a damaged packet and resync where libsndfile gives up;
        ``FFmpegStream`` drops exactly ``int(offset * rate)`` frames, so the half frame
        added below makes it start at frame ``start``. How far it got is added to ``damage``.
        """
        start, left = self._start + decoded, self.source_frames - decoded
        at = format_seconds(start / self.source_sr)
        try:
            rest = FFmpegStream(
                self.path,
                self.source_sr,
                offset=(start + 0.5) / self.source_sr,
                duration=(left + 0.5) / self.source_sr,
                on_corrupt="keep",
            )
        except AudioError as exc:
            self.damage += f"; only the audio before {at} is kept (FFmpeg cannot read the file: {exc.detail})"
            return
        kept = 0
        try:
            for block in rest.blocks():
                kept += block.size
                yield block
        except AudioError as exc:
            self.damage += f"; FFmpeg decoded on from {at} until it failed: {exc.detail}"
            return
        finally:
            rest.close()
        more = format_seconds(kept / self.source_sr)
        self.damage += f"; FFmpeg decoded {more} more from {at}" + (f" ({rest.damage})" if rest.damage else "")


def open_audio(path, sr: int, *, offset=None, duration=None, block_frames: int = BLOCK_FRAMES, on_corrupt="skip"):
    """The decoder for ``path``: soundfile for what it reads, FFmpeg for the rest.

    Files whose extension only FFmpeg reads (``FFMPEG_EXTENSIONS``: m4a, aac, wma,
    webm, mkv, mp4, ...) open with :class:`FFmpegStream`; any other file with
    :class:`~mgc.engine.audio.AudioStream`, and when libsndfile cannot open it at
    all (``unreadable``/``unsupported``: an Ogg holding Theora video, an M4A named
    .mp3) with FFmpegStream next. When FFmpeg cannot open it either, soundfile's
    failure is raised.

    Parameters
    ----------
    path : str or Path
        Audio (or video) file.
    sr : int
        Target sample rate.
    offset, duration : float, optional
        Window in seconds, as ``librosa.load``.
    block_frames : int
        Source frames per decoded block.
    on_corrupt : {"skip", "keep"}
        Damage part-way through the stream: raise ``corrupt`` (skip) or keep what
        decodes and say why in the stream's ``damage`` (keep).

    Returns
    -------
    AudioStream or FFmpegStream
        An open stream; ``blocks()`` yields np.ndarray [shape=(n,), dtype=float32] at ``sr``.

    Raises
    ------
    AudioError
        When the file cannot be opened; ``.kind`` says why.
    """
    path = str(path)
    name = os.path.basename(path)
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    options = dict(offset=offset, duration=duration, block_frames=block_frames, on_corrupt=check_on_corrupt(on_corrupt))
    if ext in FFMPEG_EXTENSIONS:
        return FFmpegStream(path, sr, **options)
    try:
        return (_ResyncingAudioStream if on_corrupt == "keep" else AudioStream)(path, sr, **options)
    except AudioError as error:
        if error.kind not in _FALLBACK_KINDS:
            raise
        first = error
    try:
        return FFmpegStream(path, sr, **options)
    except AudioError as error:
        if error.kind in _FALLBACK_KINDS:
            raise first from None
        raise
