"""Peak memory of one process decoding a long file: M4A (AAC, through FFmpeg) against FLAC (soundfile).

``python benchmarks/decode_memory.py [--minutes 60] [--workdir DIR]`` writes a FLAC and an AAC M4A of
``--minutes`` of real music (the first ``../shared/audio/*.hq.ogg`` repeated), then decodes each to
22050 Hz mono with ``mgc.engine.open_audio`` in a fresh process and prints its peak resident set
(the target of issue 25: the M4A within 1.2x of the FLAC).
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "audio"


def make(folder: str, minutes: int) -> tuple[str, str]:
    """The FLAC and the M4A of ``minutes`` of the first shared recording, repeated (made once)."""
    import av
    import soundfile as sf

    sources = sorted(glob.glob(str(SHARED / "*.hq.ogg")))
    if not sources:
        sys.exit(f"real recordings not found at {SHARED}")
    src, sr = sf.read(sources[0], dtype="float32", always_2d=True)
    src = np.ascontiguousarray(src[:, :2] if src.shape[1] > 1 else np.repeat(src, 2, axis=1))
    repeats = int(np.ceil(minutes * 60 * sr / len(src)))
    flac, m4a = os.path.join(folder, f"long-{minutes}.flac"), os.path.join(folder, f"long-{minutes}.m4a")
    if not os.path.exists(flac):
        with sf.SoundFile(flac, "w", sr, 2, format="FLAC") as out:
            for _ in range(repeats):
                out.write(src)
    if not os.path.exists(m4a):
        with av.open(m4a, "w") as out:
            stream = out.add_stream("aac", rate=sr, layout="stereo")
            stream.bit_rate = 192_000
            for _ in range(repeats):
                for start in range(0, len(src), 65536):
                    planes = src[start : start + 65536].T.copy()
                    frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo")
                    frame.sample_rate = sr
                    for packet in stream.encode(frame):
                        out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    return flac, m4a


def child(path: str) -> None:
    from mgc.engine import open_audio

    started, n = time.perf_counter(), 0
    for block in open_audio(path, 22050).blocks():
        n += block.size
    peak, wall = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - started
    print(f"{os.path.basename(path):18} {n / 22050 / 60:6.1f} min  {wall:6.1f} s  {peak:6.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mgc-bench-decode-memory"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    os.makedirs(args.workdir, exist_ok=True)
    print(f"file               decoded    wall    peak RSS  ({args.minutes} min of real music, to 22050 Hz mono)")
    for path in make(args.workdir, args.minutes):
        subprocess.run([sys.executable, __file__, "--child", path], check=True)


if __name__ == "__main__":
    main()
