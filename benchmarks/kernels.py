"""Kernel speed: mgc's Numba kernels vs librosa, one thread, same run (``mgc bench`` measures every peer).

Usage:
    python benchmarks/kernels.py [--seconds 30] [--batch 16] [--repeat 7]

Prints, for a clip at 22050 Hz with librosa's defaults (n_fft 2048, hop 512,
128 mels, 20 MFCC), the median time over ``--repeat`` runs after a warm-up
for librosa and for mgc, and the ratio, for the power spectrogram, the mel
spectrogram, the log-mel (dB) spectrogram and MFCC; the same for a stacked
batch of clips; then the compile-plus-first-call time of a fresh process with
an empty Numba cache (cold) and with the cache filled (warm).

Everything runs on one thread. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which
this workplace sets for old OpenBLAS builds and which slow a current numpy,
are removed before numpy loads so librosa's BLAS calls run at full speed.
"""

from __future__ import annotations

import os
import sys

for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mgc.engine.bench.timing import median_seconds  # noqa: E402  (mgc bench's timing: warm-up apart, medians)

SR = 22050
MEL = dict(sr=SR, n_fft=2048, hop_length=512, n_mels=128)

FIRST_CALL = """
import time, numpy as np
start = time.perf_counter()
from mgc import kernels
y = np.random.default_rng(0).standard_normal(22050 * 30).astype(np.float32)
kernels.mfcc(y=y, sr=22050, n_mfcc=20)
kernels.log_melspectrogram(y, sr=22050)
kernels.spectrogram(y)
print(time.perf_counter() - start)
"""


def first_call_seconds(cache_dir: str) -> float:
    """Import + compile (or load) + first call, in a fresh process using ``cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def report(rows, header) -> None:
    """Print rows of (name, librosa seconds, mgc seconds) as an aligned table with the ratio."""
    print(f"\n{header}")
    print(f"{'feature':<24}{'librosa ms':>12}{'mgc ms':>10}{'speed-up':>10}")
    for name, theirs, ours in rows:
        print(f"{name:<24}{theirs * 1e3:>12.2f}{ours * 1e3:>10.2f}{theirs / ours:>9.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="clip length (default 30)")
    parser.add_argument("--batch", type=int, default=16, help="clips in the stacked batch (default 16)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per row, after a warm-up (default 7)")
    args = parser.parse_args()

    import librosa

    from mgc import kernels

    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(int(SR * args.seconds))).astype(np.float32)
    batch = (0.1 * rng.standard_normal((args.batch, clip.size))).astype(np.float32)

    def cases(y):
        return [
            (
                "power spectrogram",
                lambda: np.abs(librosa.stft(y, n_fft=2048, hop_length=512, window="hann", center=True)) ** 2,
                lambda: kernels.spectrogram(y, n_fft=2048, hop_length=512, power=2.0),
            ),
            (
                "melspectrogram",
                lambda: librosa.feature.melspectrogram(y=y, power=2.0, **MEL),
                lambda: kernels.melspectrogram(y, power=2.0, **MEL),
            ),
            (
                "log-mel (dB)",
                lambda: librosa.power_to_db(
                    librosa.feature.melspectrogram(y=y, **MEL), ref=1.0, amin=1e-10, top_db=80.0
                ),
                lambda: kernels.log_melspectrogram(y, ref=1.0, amin=1e-10, top_db=80.0, **MEL),
            ),
            (
                "mfcc (20)",
                lambda: librosa.feature.mfcc(y=y, n_mfcc=20, **MEL),
                lambda: kernels.mfcc(y=y, n_mfcc=20, **MEL),
            ),
        ]

    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(
            f"{i['internal_api']} {i.get('architecture', '')} x{i['num_threads']}" for i in threadpool_info()
        )
    except ImportError:
        blas = "threadpoolctl not installed"
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}"
    )
    print(f"librosa {librosa.__version__}, numpy {np.__version__}; BLAS: {blas}")
    print(
        f"{args.seconds:g} s clip at {SR} Hz, n_fft 2048, hop 512, 128 mels; "
        f"median of {args.repeat} after a warm-up; one thread"
    )

    report(
        [(name, median_seconds(a, args.repeat), median_seconds(b, args.repeat)) for name, a, b in cases(clip)],
        "one clip",
    )
    report(
        [
            (name, median_seconds(a, max(3, args.repeat // 2)), median_seconds(b, max(3, args.repeat // 2)))
            for name, a, b in cases(batch)
        ],
        f"stacked batch of {args.batch} clips {batch.shape}",
    )

    with tempfile.TemporaryDirectory() as cache:
        cold = first_call_seconds(cache)
        warm = first_call_seconds(cache)
    print("\nimport + compile + first call of mfcc, log-mel and spectrogram in a fresh process")
    print(f"{'cold (empty Numba cache)':<28}{cold:>8.2f} s")
    print(f"{'warm (cache filled)':<28}{warm:>8.2f} s")


if __name__ == "__main__":
    main()
