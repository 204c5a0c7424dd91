"""Decoding every format: each reader's single-core rate, and ``mgc extract`` tracks/s, side by side.

Usage:
    python benchmarks/decode.py                  # 30 s clips, median of 5 runs, 64 tracks per format
    python benchmarks/decode.py --quick          # one run, 10 s clips, 8 tracks per format
    python benchmarks/decode.py [--seconds 30] [--runs 5] [--tracks 64] [--workers 2] [--workdir DIR]

Inputs: a ``--seconds`` clip of real music (the 44.1 kHz recordings ``*.hq.ogg``
of ``../shared/audio``, stereo as they are, cut from a third of the way in and
joined end to end when one is too short); without that folder, a generated
music-like stereo signal (said so in the output). The clip is encoded here,
with soundfile and PyAV, into each format: WAV (16-bit), FLAC, MP3, Ogg Vorbis,
Opus (``.opus``, 48 kHz as Opus requires), AAC in ``.m4a`` and ALAC in ``.m4a``.

For each format, each reader decodes the whole file, mixes it to mono and
resamples it to 22050 Hz with soxr "HQ", on one core (a child process per
reader, one thread: ``OMP_NUM_THREADS=1`` and the like, FFmpeg's decoders with
one thread). The figure is x real time (audio seconds / wall seconds), the
median of ``--runs`` runs after a warm-up run. Readers:

- soundfile: ``soundfile.read`` of the whole file (libsndfile), where it reads the format;
- pyav: PyAV directly (every frame, converted to float32, concatenated);
- mgc: mgc's own path, ``open_audio`` when it exists (``mgc.engine.audio``, else
  ``mgc.engine.ffmpeg``), else ``AudioStream`` (its ``blocks()``: streaming
  decode, mono and soxr); the output names the one used;
- mgc-ffmpeg: ``mgc.engine.ffmpeg.FFmpegStream`` directly, when that module exists;
- pedalboard and torchcodec when importable ("not installed" otherwise).

A reader that fails on a format shows "not readable". Then ``python -m mgc.cli
extract FOLDER STORE --workers 2`` (default spec) on a folder of ``--tracks``
hard links to each format's file, timed whole (start-up included; the median of
up to 3 runs, a fresh store each), gives tracks/s. Last, per format, the fastest
reader and mgc's path as a fraction of it (target: MP3 and AAC >= 0.8x).
"""

from __future__ import annotations

import os
import sys

# One thread everywhere, before numpy or soxr load (inherited by the children).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
THREAD_ENV = dict.fromkeys((*_THREAD_VARIABLES, "VECLIB_MAXIMUM_THREADS"), "1")
os.environ.update(THREAD_ENV)
# This workplace sets OpenBLAS variables meant for old builds that slow a current numpy.
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import music  # noqa: E402  (the benchmarks' music-like clip, when no real recording is here)

ROOT = Path(__file__).resolve().parents[1]
SHARED_AUDIO = ROOT.parent / "shared" / "audio"
SR = 22050
SOURCE_SR = 44100
# name -> file name of the encoded clip (the extension is what mgc lists by).
FORMATS = {
    "WAV": "clip.wav",
    "FLAC": "clip.flac",
    "MP3": "clip.mp3",
    "Ogg Vorbis": "clip.ogg",
    "Opus": "clip.opus",
    "AAC (m4a)": "aac.m4a",
    "ALAC (m4a)": "alac.m4a",
}
READERS = ("soundfile", "pyav", "mgc", "mgc-ffmpeg", "pedalboard", "torchcodec")
NOT_READABLE = "not readable"
NOT_INSTALLED = "not installed"


# ---- inputs ------------------------------------------------------------------------------------


def source_clip(seconds: float) -> tuple[np.ndarray, str]:
    """``(clip (n, channels) float32 at 44.1 kHz, description)``."""
    import soundfile as sf
    import soxr

    sources = sorted(SHARED_AUDIO.glob("*.hq.ogg"), key=lambda p: -sf.info(p).duration)
    if not sources:
        return music(seconds, SOURCE_SR, 0), f"generated music-like stereo signal ({SHARED_AUDIO} not found)"
    need = int(seconds * SOURCE_SR)
    pieces, names, have = [], [], 0
    for path in sources:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != SOURCE_SR:
            audio = soxr.resample(audio, rate, SOURCE_SR, quality="HQ").astype(np.float32)
        start = len(audio) // 3 if len(audio) - len(audio) // 3 >= need - have else 0
        piece = audio[start : start + need - have]
        if piece.shape[1] == 1:
            piece = np.repeat(piece, 2, axis=1)
        pieces.append(piece[:, :2])
        names.append(path.name.removesuffix(".hq.ogg"))
        have += len(piece)
        if have >= need:
            break
    clip = np.concatenate(pieces)
    if len(clip) < need:  # all recordings together are shorter: loop them
        clip = np.resize(clip, (need, clip.shape[1]))
    return clip, f"{seconds:g} s of {' + '.join(names)} (44.1 kHz stereo, real music)"


def encode_av(path: Path, clip: np.ndarray, rate: int, codec: str, *, fmt: str | None = None, bit_rate=None, **opts):
    """Encode ``clip (n, channels)`` with PyAV's ``codec`` into ``path`` (the encoder converts sample format)."""
    import av

    layout = "stereo" if clip.shape[1] == 2 else "mono"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if fmt:
            stream.format = fmt
        if bit_rate:
            stream.bit_rate = bit_rate
        stream.options = opts
        planar = np.ascontiguousarray(clip.T)
        for start in range(0, planar.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(planar[:, start : start + 4096], format="fltp", layout=layout)
            frame.rate = rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def av_encoder(*names: str) -> str | None:
    """The first of ``names`` that this PyAV's FFmpeg can encode with."""
    import av

    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - an unknown codec raises a codec-specific error
            continue
    return None


def make_inputs(workdir: Path, seconds: float) -> tuple[dict[str, Path], dict[str, str], str]:
    """``({format: file}, {format: how it was encoded}, description of the music)``; reused when present."""
    import soundfile as sf
    import soxr

    folder = workdir / f"clips-{seconds:g}s"
    marker = folder / "inputs.json"
    if marker.exists():
        saved = json.loads(marker.read_text())
        return {k: folder / v for k, v in FORMATS.items() if k in saved["how"]}, saved["how"], saved["what"]
    folder.mkdir(parents=True, exist_ok=True)
    clip, what = source_clip(seconds)
    how: dict[str, str] = {}
    sf.write(folder / FORMATS["WAV"], clip, SOURCE_SR, subtype="PCM_16")
    how["WAV"] = "soundfile PCM_16"
    sf.write(folder / FORMATS["FLAC"], clip, SOURCE_SR, subtype="PCM_16")
    how["FLAC"] = "soundfile 16-bit"
    try:
        sf.write(folder / FORMATS["MP3"], clip, SOURCE_SR, format="MP3", subtype="MPEG_LAYER_III")
        how["MP3"] = "soundfile (LAME)"
    except Exception:  # noqa: BLE001 - a libsndfile without MP3 writing
        encoder = av_encoder("libmp3lame")
        if encoder:
            encode_av(folder / FORMATS["MP3"], clip, SOURCE_SR, encoder, bit_rate=192_000)
            how["MP3"] = "PyAV libmp3lame 192k"
    sf.write(folder / FORMATS["Ogg Vorbis"], clip, SOURCE_SR, format="OGG", subtype="VORBIS")
    how["Ogg Vorbis"] = "soundfile (libvorbis)"
    # Opus runs at 48 kHz: resample first (what an encoder does anyway).
    clip48 = soxr.resample(clip, SOURCE_SR, 48000, quality="HQ").astype(np.float32)
    encoder = av_encoder("libopus")
    if encoder:
        encode_av(folder / FORMATS["Opus"], clip48, 48000, encoder, bit_rate=128_000)
        how["Opus"] = "PyAV libopus 128k, 48 kHz"
    else:
        sf.write(folder / FORMATS["Opus"], clip48, 48000, format="OGG", subtype="OPUS")
        how["Opus"] = "soundfile (libopus), 48 kHz"
    if av_encoder("aac"):
        encode_av(folder / FORMATS["AAC (m4a)"], clip, SOURCE_SR, "aac", bit_rate=256_000)
        how["AAC (m4a)"] = "PyAV aac 256k"
    if av_encoder("alac"):
        encode_av(folder / FORMATS["ALAC (m4a)"], clip, SOURCE_SR, "alac", fmt="s16p")
        how["ALAC (m4a)"] = "PyAV alac 16-bit"
    marker.write_text(json.dumps({"how": how, "what": what}))
    return {k: folder / v for k, v in FORMATS.items() if k in how}, how, what


# ---- the readers, in a child process -------------------------------------------------------------


def _mono_resample(frames: np.ndarray, rate: int, channels_first: bool) -> np.ndarray:
    """The same mono mix for every reader (the channels' mean, column by column, as mgc does) and soxr HQ."""
    import soxr

    if frames.ndim == 2:
        channels = frames if channels_first else frames.T
        mono = channels[0].astype(np.float32, copy=True)
        for channel in channels[1:]:
            mono += channel
        if len(channels) > 1:
            mono /= np.float32(len(channels))
        frames = mono
    return soxr.resample(frames, rate, SR, quality="HQ")


def read_soundfile(path: str) -> int:
    import soundfile as sf

    frames, rate = sf.read(path, dtype="float32", always_2d=True)
    return _mono_resample(frames, rate, False).size


# PyAV sample formats and the scale that turns them into float32 in [-1, 1).
_AV_SCALE = {"s16": 1 / 32768, "s32": 1 / 2147483648, "flt": None, "dbl": None}


def _av_float(frame) -> np.ndarray:
    """A decoded PyAV frame as float32 ``(channels, n)``."""
    fmt = frame.format
    name = fmt.name.removesuffix("p")
    data = frame.to_ndarray()
    if not fmt.is_planar:  # packed: one row of interleaved samples
        data = data.reshape(-1, len(frame.layout.channels)).T
    if name not in _AV_SCALE:  # u8, s64, ...: rare in music files
        return data.astype(np.float32)
    scale = _AV_SCALE[name]
    return data.astype(np.float32) if scale is None else data.astype(np.float32) * np.float32(scale)


def read_pyav(path: str) -> int:
    import av

    with av.open(path) as container:
        stream = container.streams.audio[0]
        stream.codec_context.thread_count = 1
        parts = [_av_float(frame) for frame in container.decode(stream)]
        rate = stream.codec_context.sample_rate
    return _mono_resample(np.concatenate(parts, axis=1), rate, True).size


def _iterate(stream) -> int:
    n = 0
    try:
        for block in stream.blocks():
            n += block.size
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
    return n


def _mgc_opener():
    """``(name, callable(path, sr))`` of mgc's path: ``open_audio`` (``engine.audio``, else ``engine.ffmpeg``)."""
    from mgc.engine import audio

    if hasattr(audio, "open_audio"):
        return "mgc.engine.audio.open_audio", audio.open_audio
    try:
        from mgc.engine import ffmpeg
    except ImportError:
        ffmpeg = None
    if ffmpeg is not None and hasattr(ffmpeg, "open_audio"):
        return "mgc.engine.ffmpeg.open_audio", ffmpeg.open_audio
    return "mgc.engine.audio.AudioStream", audio.AudioStream


def read_mgc(path: str) -> int:
    return _iterate(_mgc_opener()[1](path, SR))


def read_mgc_ffmpeg(path: str) -> int:
    from mgc.engine.ffmpeg import FFmpegStream

    return _iterate(FFmpegStream(path, SR))


def read_pedalboard(path: str) -> int:
    from pedalboard.io import AudioFile

    with AudioFile(path) as handle:
        rate = handle.samplerate
        frames = handle.read(handle.frames)
    return _mono_resample(frames, int(rate), True).size


def read_torchcodec(path: str) -> int:
    import torch
    from torchcodec.decoders import AudioDecoder

    torch.set_num_threads(1)
    samples = AudioDecoder(path).get_all_samples()
    return _mono_resample(samples.data.numpy(), int(samples.sample_rate), True).size


READ = {
    "soundfile": read_soundfile,
    "pyav": read_pyav,
    "mgc": read_mgc,
    "mgc-ffmpeg": read_mgc_ffmpeg,
    "pedalboard": read_pedalboard,
    "torchcodec": read_torchcodec,
}


def available(reader: str) -> bool:
    module = {"soundfile": "soundfile", "pyav": "av", "mgc": "mgc.engine.audio", "mgc-ffmpeg": "mgc.engine.ffmpeg"}
    try:
        return importlib.util.find_spec(module.get(reader, reader)) is not None
    except ModuleNotFoundError:
        return False


def child(reader: str, files: dict[str, str], runs: int) -> None:
    """Print JSON {format: {"seconds": median wall s} or {"error": why}} for one reader."""
    read = READ[reader]
    result = {}
    for fmt, path in files.items():
        try:
            read(path)  # warm-up: imports, the OS file cache
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                read(path)
                times.append(time.perf_counter() - start)
            result[fmt] = {"seconds": statistics.median(times)}
        except Exception as exc:  # noqa: BLE001 - any failure means this reader cannot read this file
            result[fmt] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    print(json.dumps(result))


def measure_reader(reader: str, files: dict[str, Path], runs: int) -> dict:
    command = [sys.executable, __file__, "_child", reader, json.dumps({k: str(v) for k, v in files.items()}), str(runs)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {fmt: {"error": f"child failed ({done.returncode}): {error}"} for fmt in files}
    return json.loads(done.stdout.strip().splitlines()[-1])


def mgc_path_name() -> str:
    """Which mgc entry point the "mgc" column uses (asked in a child: this process does not import mgc)."""
    done = subprocess.run([sys.executable, __file__, "_which"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


# ---- mgc extract ----------------------------------------------------------------------------------


def extract_rate(workdir: Path, fmt: str, path: Path, tracks: int, workers: int, runs: int) -> tuple[str, float | None]:
    """``(cell, tracks/s)`` of ``mgc extract`` on ``tracks`` hard links to ``path``."""
    slug = "".join(c if c.isalnum() else "-" for c in fmt.lower())
    folder = workdir / f"extract-{slug}-{tracks}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i in range(tracks):
        os.link(path, folder / f"t{i:04d}{path.suffix}")
    store = workdir / f"store-{slug}"
    command = [sys.executable, "-m", "mgc.cli", "extract", str(folder), str(store), "--workers", str(workers)]
    times = []
    for _ in range(runs):
        shutil.rmtree(store, ignore_errors=True)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no message"])[-1].strip()
            print(f"  mgc extract / {fmt}: exit {done.returncode}: {tail[:160]}")
            return NOT_READABLE, None
        times.append(elapsed)
        failed = re.search(r"failed in this run\W+(\d+)", done.stdout + done.stderr)
        failed = int(failed.group(1)) if failed else 0
    rate = tracks / statistics.median(times)
    if failed:
        print(f"  mgc extract / {fmt}: {failed} of {tracks} tracks failed (see `mgc inspect {store}`)")
        return f"{rate:.2f} ({failed} failed)", rate
    return f"{rate:.2f}", rate


# ---- the report -----------------------------------------------------------------------------------


def report(rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        cells = [str(x).ljust(w) if j == 0 else str(x).rjust(w) for j, (x, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run, 10 s clips, 8 tracks")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default 30, --quick 10)")
    parser.add_argument("--runs", type=int, default=None, help="timed decode runs per cell (default 5, --quick 1)")
    parser.add_argument("--tracks", type=int, default=None, help="links per extract folder (default 64, --quick 8)")
    parser.add_argument("--workers", type=int, default=2, help="mgc extract workers")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mgc-bench-decode")
    args = parser.parse_args()
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    runs = args.runs or (1 if args.quick else 5)
    tracks = args.tracks or (8 if args.quick else 64)
    extract_runs = min(runs, 3)
    args.workdir.mkdir(parents=True, exist_ok=True)

    import av
    import soundfile as sf
    import soxr

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}; load average before: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"soundfile {sf.__version__} (libsndfile {sf.__libsndfile_version__}), PyAV {av.__version__} "
        f"(FFmpeg {av.library_versions.get('libavcodec', ('?',))}), soxr {soxr.__version__}"
    )
    started = time.perf_counter()
    files, how, what = make_inputs(args.workdir, seconds)
    print(f"input: {what}; ready in {time.perf_counter() - started:.1f} s under {args.workdir}")
    for fmt in FORMATS:
        if fmt in files:
            size = files[fmt].stat().st_size
            print(f"  {fmt:<11} {how[fmt]:<30} {size / 1024:8.0f} KiB  {size * 8 / seconds / 1000:6.0f} kbit/s")
        else:
            print(f"  {fmt:<11} no encoder in this soundfile/PyAV: skipped")
    mgc_path = mgc_path_name()
    print(
        f"decode + mono + soxr HQ to {SR} Hz on one core, x real time, median of {runs} after a warm-up; "
        f"mgc = {mgc_path}; extract: tracks/s of `mgc extract` on {tracks} links, "
        f"--workers {args.workers}, median of {extract_runs}\n"
    )

    rates: dict[str, dict[str, float | str]] = {}
    for reader in READERS:
        if not available(reader):
            rates[reader] = dict.fromkeys(files, NOT_INSTALLED)
            continue
        result = measure_reader(reader, files, runs)
        rates[reader] = {fmt: seconds / r["seconds"] if "seconds" in r else NOT_READABLE for fmt, r in result.items()}
        errors = {fmt: r["error"] for fmt, r in result.items() if "error" in r}
        for fmt, error in errors.items():
            print(f"  {reader} / {fmt}: {error}")
        print(f"  {reader}: done", flush=True)
    columns = [r for r in READERS if any(v != NOT_INSTALLED for v in rates[r].values())]
    missing = [r for r in READERS if r not in columns]

    extract_cells = {}
    for fmt, path in files.items():
        cell, _ = extract_rate(args.workdir, fmt, path, tracks, args.workers, extract_runs)
        extract_cells[fmt] = cell
        print(f"  extract {fmt}: {cell}", flush=True)
    print()

    def cell(value) -> str:
        return f"{value:,.0f}x" if isinstance(value, float) else value

    rows = [(fmt, *(cell(rates[r][fmt]) for r in columns), extract_cells[fmt]) for fmt in files]
    print(f"Decode + mono + resample, x real time on one core; `mgc extract` tracks/s on {args.workers} workers:")
    report(rows, ("format", *columns, "extract tracks/s"))
    if missing:
        print(f"{', '.join(missing)}: {NOT_INSTALLED}")

    print("fastest reader per format, and mgc's path (and FFmpegStream, when present) as a fraction of it:")
    for fmt in files:
        measured = {r: v for r, v in ((r, rates[r][fmt]) for r in columns) if isinstance(v, float)}
        if not measured:
            print(f"  {fmt}: no reader")
            continue
        best = max(measured, key=measured.get)
        line = f"  {fmt:<11} fastest {best} {measured[best]:,.0f}x"
        for ours in ("mgc", "mgc-ffmpeg"):
            if ours in measured:
                line += f"; {ours} {measured[ours] / measured[best]:.2f}"
            elif ours in columns:
                line += f"; {ours} {NOT_READABLE}"
        if fmt.split()[0] in ("MP3", "AAC"):
            fraction = measured.get("mgc", 0.0) / measured[best]
            line += f"  (target mgc >= 0.8: {'met' if fraction >= 0.8 else 'not met'})"
        print(line)


if __name__ == "__main__":
    if sys.argv[1:] == ["_which"]:
        print(_mgc_opener()[0])
    elif len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
