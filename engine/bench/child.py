"""The measurements ``mgc bench`` runs in a fresh process of one thread (``python -m mgc.engine.bench.child``).

A request (JSON on standard input) names a ``section``:

- ``"clip"``: the kernels (power spectrogram, log-mel, MFCC), every asked peer's log-mel and
  MFCC with its parity against librosa, the float32 real FFTs of the same frames and the
  bandwidth of a copy of the power spectrogram, on one clip (``clip``: a ``.npy`` of float32
  samples at ``params["sr"]``);
- ``"decode"``: decoding alone (to mono at the file's own rate) and resampling alone (soxr HQ to
  ``sr``) of each file of ``files``.

The answer (JSON on standard output) is a list of rows (see :mod:`mgc.engine.bench`). A fresh
process keeps one peer's imports, threads and memory from touching another's figures and
lets the first call (import, compilation, cache loads) be timed apart from the rest.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from .peers import INSTALL, PARAMS, make_peer
from .timing import one_thread, round_robin

__all__ = ["clip_rows", "decode_rows", "main"]


def _parity(ours: np.ndarray, reference: np.ndarray | None) -> float | None:
    """Largest absolute difference over the common frames (None without a reference or shapes that differ)."""
    if reference is None or ours.ndim != 2 or ours.shape[0] != reference.shape[0]:
        return None
    n = min(ours.shape[1], reference.shape[1])
    return float(np.abs(ours[:, :n].astype(np.float64) - reference[:, :n]).max())


def _frames(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """The windowed frames of a centred, zero-padded STFT of ``y``: ``(n_frames, n_fft)`` float32."""
    from mgc import kernels

    padded = np.pad(y, n_fft // 2)
    n = 1 + (padded.size - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    return (padded[index] * kernels.get_window("hann", n_fft).astype(np.float32)).astype(np.float32)


def _blocked_r2c():
    """The FFT alone as mgc's kernels run it: rocket-fft's ``r2c`` on 64 frames at a time into one cached block.

    No output is allocated or written back, so it is the floor of any STFT-based kernel on this machine.
    """
    import numba
    from rocket_fft import r2c

    @numba.njit
    def blocked(frames, spectrum):
        for first in range(0, frames.shape[0], spectrum.shape[1]):
            count = min(spectrum.shape[1], frames.shape[0] - first)
            r2c(frames[first : first + count], spectrum[:, :count].T, np.array([1]), True, 1.0, 1)

    return blocked


def _in_place_ffts(clip: np.ndarray, n_fft: int, hop: int) -> list[tuple[str, object]]:
    """The FFT of the same frames unwindowed, read in place from the padded clip (a strided view, no copy).

    This is how mgc's Hann/Hamming kernels run their FFT (the window is applied after it, across
    bins), and it is faster than any FFT of a frame matrix: the frames are never written out.
    """
    try:
        import rocket_fft  # noqa: F401
    except ImportError:
        return []
    padded = np.pad(clip.astype(np.float32), n_fft // 2)
    n = 1 + (padded.size - n_fft) // hop
    strided = np.lib.stride_tricks.as_strided(padded, (n, n_fft), (hop * 4, 4))
    blocked = _blocked_r2c()
    spectrum = np.empty((n_fft // 2 + 1, 64), np.complex64)
    return [("rocket-fft r2c, 64 frames a block, read in place", lambda: blocked(strided, spectrum))]


def _ffts(frames: np.ndarray) -> list[tuple[str, object]]:
    """``(name, function)`` of every float32 real FFT installed, over the rows of ``frames``, one thread."""
    cases = [("numpy.fft.rfft", lambda: np.fft.rfft(frames, axis=-1))]
    try:
        import scipy.fft

        cases.append(("scipy.fft.rfft", lambda: scipy.fft.rfft(frames, axis=-1, workers=1)))
    except ImportError:
        pass
    try:
        import numba
        import rocket_fft  # noqa: F401 - registers np.fft inside Numba

        rfft = numba.njit(lambda x: np.fft.rfft(x, axis=-1))
        cases.append(("rocket-fft (Numba)", lambda: rfft(frames)))
        blocked = _blocked_r2c()
        spectrum = np.empty((frames.shape[1] // 2 + 1, 64), np.complex64)
        cases.append(("rocket-fft r2c, 64 frames a block", lambda: blocked(frames, spectrum)))
    except ImportError:
        pass
    try:
        import ducc0

        cases.append(("ducc0.fft.r2c", lambda: ducc0.fft.r2c(frames, axes=(1,), nthreads=1)))
    except ImportError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        tensor = torch.from_numpy(frames)
        cases.append(("torch.fft.rfft", lambda: torch.fft.rfft(tensor, dim=-1)))
    return cases


def clip_rows(clip: np.ndarray, peers: list[str], repeat: int, params: dict | None = None) -> list[dict]:
    """Rows of the ``clip`` section (see the module's docstring)."""
    from mgc import kernels

    p = {**PARAMS, **(params or {})}
    seconds = clip.size / p["sr"]
    rows: list[dict] = []

    def row(section, name, timing, **extra):
        rows.append(
            {
                "section": section,
                "name": name,
                "seconds": timing.median if timing.error is None else None,
                "first_seconds": timing.first if timing.error is None else None,
                "audio_seconds": seconds,
                "tracks": 1,
                "error": timing.error,
                **extra,
            }
        )

    # The reference numbers first (librosa's), then every peer timed in turns.
    reference = {}
    try:
        logmel, mfcc = make_peer("librosa", p)
        reference = {"log-mel": logmel(clip), "mfcc": mfcc(clip)}
    except ImportError:
        pass
    cases, parity, missing = [], {}, []
    for name in peers:
        started = time.perf_counter()
        try:
            logmel, mfcc = make_peer(name, p)
        except ImportError as error:
            missing.append((name, f"not installed ({error.name or error}): {INSTALL.get(name, 'pip install ' + name)}"))
            continue
        except Exception as error:  # noqa: BLE001 - a peer that fails to set up is a row saying so
            missing.append((name, f"failed to set up: {str(error).splitlines()[0][:120] if str(error) else error}"))
            continue
        setup = time.perf_counter() - started
        for feature, function in (("log-mel", logmel), ("mfcc", mfcc)):
            cases.append((f"{name} {feature}", lambda f=function: f(clip)))
            try:
                parity[f"{name} {feature}"] = (_parity(np.asarray(function(clip)), reference.get(feature)), setup)
            except Exception:  # noqa: BLE001 - its timing below records the failure
                parity[f"{name} {feature}"] = (None, setup)
    n_fft, hop = p["n_fft"], p["hop_length"]
    mel_args = {k: p[k] for k in ("sr", "n_fft", "hop_length", "n_mels", "fmin", "fmax")}
    kernel_cases = [
        ("power spectrogram", lambda: kernels.spectrogram(clip, n_fft=n_fft, hop_length=hop, power=2.0)),
        ("log-mel", lambda: kernels.log_melspectrogram(clip, top_db=p["top_db"], **mel_args)),
        ("mfcc", lambda: kernels.mfcc(y=clip, n_mfcc=p["n_mfcc"], **mel_args)),
    ]
    frames = _frames(clip, n_fft, hop)
    power = kernels.spectrogram(clip, n_fft=n_fft, hop_length=hop, power=2.0)
    copy = np.empty_like(power)
    fft_cases = [
        *_ffts(frames),
        *_in_place_ffts(clip, n_fft, hop),
        ("mgc stft", lambda: kernels.stft(clip, n_fft=n_fft, hop_length=hop)),
    ]
    every = [*kernel_cases, *cases, *fft_cases, ("copy of power spectrogram", lambda: np.copyto(copy, power))]
    with one_thread():
        timings = round_robin(every, repeat)
    by_name = dict(zip([name for name, _ in every], timings))
    for name, _ in kernel_cases:
        row("kernels", name, by_name[name])
    for name, _ in cases:
        value, setup = parity[name]
        row("peers", name, by_name[name], parity=value, setup_seconds=setup)
    for name, why in missing:
        rows.append({"section": "peers", "name": name, "seconds": None, "error": why})
    for name, _ in fft_cases:
        row("limits", name, by_name[name], frames=list(frames.shape))
    copied = by_name["copy of power spectrogram"]
    row("limits", "copy of power spectrogram", copied, bytes=2 * power.nbytes)
    return rows


#: Seconds of decoded audio per format kept in memory to time resampling alone (memory stays bounded
#: whatever the tracks: at most 300 s x 48 kHz x 4 bytes, 58 MB).
RESAMPLE_SECONDS = 300.0


def decode_rows(files: dict[str, list[str]], sr: int, repeat: int) -> list[dict]:
    """Rows of the ``decode`` section: per format, decoding alone and resampling alone.

    Decoding streams every file; resampling is timed on the first :data:`RESAMPLE_SECONDS` of the
    format's decoded audio.
    """
    import soxr

    from mgc.engine.ffmpeg import open_audio

    rows = []
    for fmt, paths in files.items():
        natives = []
        for path in paths:
            probe = open_audio(path, 8000)  # the file's own rate, read from its header
            natives.append(probe.source_sr)
            probe.close()
        kept, kept_seconds = [], 0.0
        for path, rate in zip(paths, natives):
            if kept_seconds >= RESAMPLE_SECONDS:
                break
            y = np.concatenate(list(open_audio(path, rate, duration=RESAMPLE_SECONDS - kept_seconds).blocks()))
            kept.append((y, rate))
            kept_seconds += y.size / rate
        decoded_seconds = []

        def decode_all(paths=paths, natives=natives, decoded_seconds=decoded_seconds):
            seconds = 0.0
            for path, rate in zip(paths, natives):
                for block in open_audio(path, rate).blocks():
                    seconds += block.size / rate
            decoded_seconds.append(seconds)

        def resample_all(kept=kept):
            for y, rate in kept:
                soxr.resample(y, rate, sr, quality="HQ")

        with one_thread():
            decoding, resampling = round_robin([("decode", decode_all), ("resample", resample_all)], repeat)
        rates = sorted({rate for _y, rate in kept})
        for name, timing, seconds, tracks in (
            (f"decode {fmt}", decoding, decoded_seconds[0] if decoded_seconds else 0.0, len(paths)),
            (f"resample {fmt} {'/'.join(map(str, rates))}->{sr}", resampling, kept_seconds, len(kept)),
        ):
            rows.append(
                {
                    "section": "decode",
                    "name": name,
                    "seconds": timing.median if timing.error is None else None,
                    "first_seconds": timing.first if timing.error is None else None,
                    "audio_seconds": seconds,
                    "tracks": tracks,
                    "error": timing.error,
                }
            )
    return rows


def main() -> None:
    """Answer one request from standard input (see the module's docstring)."""
    request = json.load(sys.stdin)
    if request["section"] == "clip":
        rows = clip_rows(np.load(request["clip"]), request["peers"], request["repeat"], request.get("params"))
    else:
        rows = decode_rows(request["files"], request["sr"], request["repeat"])
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main()
