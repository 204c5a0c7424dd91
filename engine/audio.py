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

A failure is classified from evidence, not from libsndfile's guess: what the
C decoders print (captured, see ``_decoder_output``), how far decoding got,
whether the end of the stream still decodes and what the first bytes hold.
What a decoder prints never reaches the terminal; for a track that decodes
completely it is dropped, even when the decoder complained on the way.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator

import numpy as np
import soundfile
import soxr

from .corpus import AUDIO_EXTENSIONS
from .errors import AudioError

__all__ = [
    "AudioStream",
    "BLOCK_FRAMES",
    "MIN_SR",
    "MAX_SR",
    "MAX_CHANNELS",
    "MAX_TRACK_SECONDS",
    "check_path",
    "format_seconds",
    "mix_to_mono",
    "too_long_error",
]

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
#: What to do with a file whose stream is damaged part-way (kind ``corrupt``): ``skip``
#: records it as a failure; ``keep`` keeps the audio that decodes (the decoder's
#: words go to the stream's ``damage``, and a store's ``tracks/damage`` column).
ON_CORRUPT = ("skip", "keep")
# What libsndfile reports when a header does not say how long the stream is
# (e.g. a FLAC written to a pipe): the length is then known only by decoding.
_UNKNOWN_FRAMES = 2**63 - 1
# Formats whose header states an exact length: a shortfall means the file was cut.
_PCM_FORMATS = {"WAV", "WAVEX", "RF64", "W64", "AIFF", "AU", "CAF", "NIST", "IRCAM"}
# MPEG decoders may legitimately deliver up to one frame fewer than counted.
_MP3_SLACK = 1152
# Frames read near the declared end of a stream that failed, to tell a cut file from a damaged one.
_END_PROBE_FRAMES = 4096

# --- What C decoders print ---------------------------------------------------------------------
# libmpg123 (inside libsndfile) writes its notes and errors with fprintf(stderr): onto file
# descriptor 2, past any Python-level redirection, over the CLI's progress bar. Each libsndfile
# call (open, read, seek) therefore runs with fd 2 pointed at a temporary file of the process.
#
# fd 2 belongs to the whole process and decoding also runs in the main process (``extract`` and
# ``map_features`` with one worker), next to the progress bar's thread. Routing that path through
# a child would cost a process start per run; instead, nothing another thread writes meanwhile is
# lost: what does not look like a decoder's line is written on to the real fd 2, byte for byte,
# as soon as the call returns (delayed by one decoder call, milliseconds). In worker processes
# nothing else writes. A lock serialises the captures of a process: two threads swapping fd 2
# at once could leave it pointing at the file. Cost: a few system calls per call (one read is
# ``BLOCK_FRAMES`` frames), no process per track.
#
# libmpg123's forms: "Note: ...", "Warning: ...", "[src/libmpg123/parse.c:wetwork():1349] error: ...",
# each one write(). Found anywhere, since another thread may have left a line unfinished (a progress
# bar's last line, ending in a colour code), but never after a letter, as in a Python warning or
# traceback ("x.py:3: UserWarning: ...", "SystemError: ...").
_DECODER_LINE = re.compile(
    rb"(?:(?<![A-Za-z])|(?<=\x1b\[m)|(?<=\x1b\[\dm)|(?<=\x1b\[\d\dm))(?:Note|Warning|Error): [^\n]*\n"
    rb"|\[[^\]\n]*\.c:[^\]\n]*\] [a-z]+: [^\n]*\n"
)
# Messages that describe damage in the stream (resync after garbage), as opposed to the decoder's remarks.
_DAMAGE = re.compile(r"illegal|resync", re.IGNORECASE)
# Progress remarks, and the bit reservoir note libmpg123 prints for valid LAME files: never evidence.
_NOISE = re.compile(r"^(?:Trying to resync|Skipped \d+ bytes in input|part2_3_length .* too large)")
_CAPTURE_LOCK = threading.Lock()
_CAPTURE_MAX_BYTES = 1 << 20  # read back per call; more (a decoder gone wild) is dropped
_sink: tuple[int, object] | None = None  # (pid, temporary file) of this process


def _reset_after_fork() -> None:
    global _CAPTURE_LOCK, _sink
    _CAPTURE_LOCK, _sink = threading.Lock(), None  # the parent's file and lock are not the child's


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_reset_after_fork)


def _sink_fd() -> int | None:
    """The capture file of the current process (made on first use), or None where none can be made."""
    global _sink
    if _sink is None or _sink[0] != os.getpid():
        try:
            _sink = (os.getpid(), tempfile.TemporaryFile(prefix="mgc-decoder-"))
        except OSError:
            return None
    return _sink[1].fileno()


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # a closed terminal: the bytes had nowhere to go anyway
        pass


@contextlib.contextmanager
def _decoder_output(lines: list):
    """Run the body with fd 2 captured; append each line a decoder printed (str) to ``lines``."""
    with _CAPTURE_LOCK:
        sink = _sink_fd()
        saved = None
        if sink is not None:
            try:
                saved = os.dup(2)
            except OSError:  # no fd 2 at all: nothing would be shown anyway
                pass
        if saved is None:
            yield
            return
        os.dup2(sink, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if os.lseek(sink, 0, os.SEEK_CUR):  # fd 2 shared the file's offset: the bytes written
                os.lseek(sink, 0, os.SEEK_SET)
                data = os.read(sink, _CAPTURE_MAX_BYTES)
                os.ftruncate(sink, 0)
                os.lseek(sink, 0, os.SEEK_SET)
                found = []
                other = _DECODER_LINE.sub(lambda match: found.append(match.group()) or b"", data)
                lines.extend(line.decode("utf-8", "replace").strip() for line in found)
                _write_all(2, other)


def _summary(lines: list, limit: int = 3) -> str:
    """What the decoder said, short: "libmpg123: Illegal Audio-MPEG-Header 0x00000000 at offset 11884; ...".

    Prefixes ("Note: ", "[file.c:function():line] error: ") and trailing advice are dropped,
    repeats (the same message at another offset) are shown once, damage first.
    """
    library, seen, damage, other = "decoder", set(), [], []
    for line in lines:
        source, _, text = line.partition("] ") if line.startswith("[") else ("", "", line)
        text = text.split(": ", 1)[-1].split(" - ", 1)[0].split(", ", 1)[0].rstrip(" .!")
        if "mpg123" in source or "MPEG" in text or line.startswith(("Note: ", "Warning: ")):
            library = "libmpg123"  # the one decoder under libsndfile that prints
        key = re.sub(r"0x[0-9a-fA-F]+|\d+", "#", text)
        if not text or _NOISE.match(text) or key in seen:
            continue
        seen.add(key)
        (damage if _DAMAGE.search(text) else other).append(text)
    picked = (damage + other)[:limit]
    picked[1:] = [t[0].lower() + t[1:] if t[1:2].islower() else t for t in picked[1:]]
    return f"{library}: {'; '.join(picked)}" if picked else ""


def _libsndfile_words(exc: BaseException, path: str) -> str:
    """The error libsndfile reports, without the path it quotes: "flac decoder lost sync"."""
    text = str(getattr(exc, "error_string", "") or exc)
    for shown in (repr(path), repr(os.fsencode(path))):
        text = text.replace(f"Error opening {shown}: ", "")
    text = text.removeprefix("Error : ").rstrip(" .")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


# Containers libsndfile cannot decode, by their first bytes: (offset, magic, what it is).
_FOREIGN = (
    (4, b"ftyp", "an MP4/M4A container (AAC or ALAC audio)"),
    (0, b"\x1aE\xdf\xa3", "a Matroska/WebM container"),
    (0, b"0&\xb2u\x8ef\xcf\x11", "an ASF/WMA container"),
    (0, b"#!AMR", "AMR speech"),
    (0, b"MAC ", "Monkey's Audio"),
    (0, b"wvpk", "WavPack"),
)


def _header_cut(handle, size: int) -> str:
    """The container whose header runs past the end of the file ("FLAC", "WAV", "AIFF"), or ""."""
    handle.seek(0)
    magic = handle.read(12)
    if magic[:4] == b"fLaC":  # metadata blocks: 1 byte (last flag, type), 3 bytes of length
        position = 4
        while True:
            handle.seek(position)
            block = handle.read(4)
            position += 4 + int.from_bytes(block[1:4], "big")
            if len(block) < 4 or position > size:
                return "FLAC"
            if block[0] & 0x80:
                return ""
    if magic[:4] in (b"RIFF", b"FORM") and magic[8:12] in (b"WAVE", b"AIFF", b"AIFC"):
        name, order, data = ("AIFF", "big", b"SSND") if magic[:4] == b"FORM" else ("WAV", "little", b"data")
        position = 12
        while True:  # chunks up to the audio data (a short data chunk is found on open)
            handle.seek(position)
            chunk = handle.read(8)
            if len(chunk) < 8:
                return name
            if chunk[:4] == data:
                return ""
            length = int.from_bytes(chunk[4:8], order)
            position += 8 + length + (length & 1)
            if position > size:
                return name
    return ""


def _open_failure(path: str, exc: BaseException, lines: list) -> AudioError:
    """Why libsndfile could not open an existing, non-empty file, from its bytes and the decoder's words."""
    said = _summary(lines)
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            cut = _header_cut(handle, os.fstat(handle.fileno()).st_size)
    except OSError as error:
        return AudioError("unreadable", path, error.strerror or str(error))
    if cut:
        return AudioError("truncated", path, f"the file ends inside its {cut} header" + (f"; {said}" if said else ""))
    for offset, magic, what in _FOREIGN:
        if head[offset : offset + len(magic)] == magic:
            return AudioError("unsupported", path, f"the content is {what}, which libsndfile cannot decode")
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    kind = "unreadable" if ext in AUDIO_EXTENSIONS else "unsupported"
    words = _libsndfile_words(exc, path)
    # libsndfile's message for content no reader accepts (a .mp3 libmpg123 finds no frame in)
    # says the file may not exist: it does, it was checked.
    if words.lower() in ("format not recognised", "file does not exist or is not a regular file (possibly a pipe?)"):
        words = "libsndfile does not recognise the content"
        if head and all(32 <= b < 127 or b in b"\t\n\r" for b in head):
            words += " (it is text)"
    return AudioError(kind, path, words + (f"; {said}" if said else ""))


def _end_decodes(path: str, frames: int) -> bool:
    """Whether the last frames a header declares decode (in a fresh handle): False for a cut file."""
    ignored: list = []
    try:
        with _decoder_output(ignored), soundfile.SoundFile(os.fsencode(path)) as handle:
            handle.seek(max(0, frames - _END_PROBE_FRAMES))
            return handle.read(_END_PROBE_FRAMES, dtype="float32").shape[0] > 0
    except (soundfile.LibsndfileError, RuntimeError, ValueError):
        return False


def mix_to_mono(frames: np.ndarray) -> np.ndarray:
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


def check_path(path: str) -> None:
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


def format_seconds(seconds: float) -> str:
    """``seconds`` as a short human reading: "3.0 s", "2.25 h"."""
    return f"{seconds / 3600:,.2f} h" if seconds >= 3600 else f"{seconds:,.1f} s"


def too_long_error(path: str, what: str) -> AudioError:
    return AudioError(
        "too_long",
        path,
        f"{what} {format_seconds(MAX_TRACK_SECONDS)}; set a duration (e.g. --duration 600)"
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


def _open(path: str, lines: list, damage: list | None = None) -> soundfile.SoundFile:
    """Open ``path`` after the checks; what the decoder prints goes to ``lines``.

    ``damage``: when given (``on_corrupt="keep"``), damage found on open is appended
    to it instead of raised.
    """
    check_path(path)
    try:
        with _decoder_output(lines):
            handle = soundfile.SoundFile(os.fsencode(path))  # bytes: names that are not UTF-8 open too
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise _open_failure(path, exc, lines) from None
    log = handle.extra_info or ""
    if handle.format in _PCM_FORMATS and "should be" in log:
        handle.close()
        raise AudioError("truncated", path, "the data chunk is shorter than its header says")
    if "Last page lacks an end-of-stream bit" in log:  # the stream stops mid-page: the file was cut
        handle.close()
        raise AudioError("truncated", path, "the Ogg stream stops before its last page")
    if "Junk after the last page" in log:
        if damage is None:
            handle.close()
            raise AudioError("corrupt", path, "damaged Ogg pages")
        damage.append("damaged Ogg pages")
    try:
        _check_format(path, handle)
    except AudioError:
        handle.close()
        raise
    return handle


def keep_or_raise(stream, failure: AudioError) -> None:
    """Raise ``failure`` unless it is damage that the ``stream``'s ``on_corrupt="keep"`` keeps (noted in ``damage``)."""
    if failure.kind != "corrupt" or stream.on_corrupt != "keep":
        raise failure
    stream.damage = failure.detail


def check_on_corrupt(value) -> str:
    """``value`` if it is one of ON_CORRUPT; else ValueError naming the choices."""
    if value not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {', '.join(ON_CORRUPT)}, got {value!r}")
    return value


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
    on_corrupt : {"skip", "keep"}
        ``skip``: a stream damaged part-way raises AudioError ``corrupt``. ``keep``: the
        audio decoded before the damage is kept (libsndfile does not resync), and
        ``damage`` says why it stopped.

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
    damage : str or None
        With ``on_corrupt="keep"``, after ``blocks()``: the reason the audio was
        kept short of its end (as a ``corrupt`` error would state it); None when
        it decoded cleanly.

    Raises
    ------
    AudioError
        On open (missing, unreadable, bad_sample_rate, too_many_channels,
        too_long, ...) or while iterating (corrupt, non_finite, too_long when
        the length was unknown).
    """

    def __init__(
        self, path, sr: int, *, offset=None, duration=None, block_frames: int = BLOCK_FRAMES, on_corrupt: str = "skip"
    ) -> None:
        self.path = str(path)
        self.sr = sr
        self.block_frames = block_frames
        self.on_corrupt = check_on_corrupt(on_corrupt)
        self.damage = None
        self._messages: list = []  # what the decoder printed (dropped once the track decodes completely)
        found: list = []
        self._file = _open(self.path, self._messages, found if on_corrupt == "keep" else None)
        if found:
            self.damage = found[0]
        self.source_sr = self._file.samplerate
        self.source_channels = self._file.channels
        self._declared = self._file.frames
        self.length_known = 0 <= self._declared < _UNKNOWN_FRAMES
        start = self._start = int((offset or 0.0) * self.source_sr)
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
            raise too_long_error(
                self.path, f"{what} lasts {format_seconds(self.source_seconds)}, more than the limit of"
            )
        if start:
            try:
                with _decoder_output(self._messages):
                    self._file.seek(start)
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                self.close()
                said = _summary(self._messages) or _libsndfile_words(exc, self.path)
                raise AudioError("corrupt", self.path, f"cannot seek to {offset} s: {said}") from None

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
        stopped = False  # decoding stopped on damage that on_corrupt="keep" keeps
        try:
            while remaining > 0:
                want = min(per_read, remaining)
                try:
                    with _decoder_output(self._messages):
                        got = self._file.read(frames=want, dtype="float32", always_2d=True, out=buffer[:want])
                except (soundfile.LibsndfileError, RuntimeError) as exc:
                    keep_or_raise(self, self._failure(self.source_frames - remaining, exc))
                    stopped = True
                    break
                n = got.shape[0]
                if n == 0:
                    break
                remaining -= n
                if not self.length_known and self.source_frames - remaining > self._max_frames:
                    what = "the header does not state the length and the audio goes on past the limit of"
                    raise too_long_error(self.path, what)
                if not np.isfinite(got).all():
                    raise AudioError("non_finite", self.path)
                mono = mix_to_mono(got)
                # With on_corrupt="keep", a stream that stops short may go on through FFmpeg: no flush yet.
                last = remaining <= 0 or (n < want and self.on_corrupt == "skip")
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                    flushed = last
                if mono.size:
                    yield mono
                if n < want:
                    break
            slack = _MP3_SLACK if self._file.format in ("MP3", "MPEG") else 0
            if self.length_known and remaining > slack and not stopped:
                keep_or_raise(self, self._failure(self.source_frames - remaining))
                stopped = True
            if stopped:  # kept damage: libsndfile does not resync, FFmpeg decodes on from there
                self.close()
                for mono in self._decode_rest(self.source_frames - remaining):
                    if resampler is not None:
                        mono = resampler.resample_chunk(mono, last=False)
                    if mono.size:
                        yield mono
            if not flushed:
                tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                if tail.size:
                    yield tail
            self._messages.clear()  # decoded completely: the decoder's remarks on the way are no failure
        finally:
            self.close()

    def _decode_rest(self, decoded: int) -> Iterator[np.ndarray]:
        """Mono blocks at the source rate of the window after its first ``decoded`` frames (kept damage).

        libsndfile does not resync after damage, so here nothing more is decoded; the
        stream that :func:`~mgc.engine.ffmpeg.open_audio` makes decodes on with FFmpeg.
        """
        self.damage += f"; only the audio before {format_seconds((self._start + decoded) / self.source_sr)} is kept"
        return iter(())

    def _failure(self, decoded: int, error: BaseException | None = None) -> AudioError:
        """Why decoding stopped after ``decoded`` frames of the window (``error``: the read raised).

        From the evidence: a PCM file's data is cut (truncated); a decoder that lost the stream
        and resynced on garbage says damage (corrupt); otherwise the declared end of the stream
        decides: when it does not decode, the file was cut (truncated), when it does, the stream
        is damaged before it (corrupt).
        """
        begun = self._start + decoded  # in frames of the file
        stop = begun
        if error is not None:  # the failed read's own progress, where libsndfile counts it (not for MP3)
            try:
                stop = max(stop, self._file.tell())
            except (soundfile.LibsndfileError, RuntimeError, ValueError):
                pass
        said = _summary(self._messages)
        if error is not None and not said:
            said = f"libsndfile: {_libsndfile_words(error, self.path)}"
        # Where decoding stopped: exactly when counted, else after the frames before the failed read.
        at = format_seconds(stop / self.source_sr)
        exact = error is None or stop > begun
        place = f"at {at}" if exact else f"after {at}" if stop else ""
        if not self.length_known:
            return AudioError("corrupt", self.path, f"decoding failed {place}".rstrip() + f": {said}")
        declared = format_seconds(self._declared / self.source_sr)
        damaged = any(_DAMAGE.search(line) for line in self._messages)
        if self._file.format in _PCM_FORMATS or (not damaged and not _end_decodes(self.path, self._declared)):
            detail = f"the audio stops {place} of {declared}" if place else f"the audio stops short of {declared}"
            return AudioError("truncated", self.path, detail + (f"; {said}" if said else ""))
        if error is not None:
            failed = f"decoding failed {place} of {declared}" if place else "decoding failed"
            return AudioError("corrupt", self.path, f"{failed}: {said}")
        reason = said or "its end decodes, so the stream is damaged before it"
        return AudioError("corrupt", self.path, f"decoded {at} of {declared}; {reason}")
