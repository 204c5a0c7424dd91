"""Convert musicnn's published TensorFlow checkpoints into the weights files mgc ships.

Usage::

    python -m mgc.models.pretrained.convert               # pip-downloads musicnn==0.1.0 into a temp folder
    python -m mgc.models.pretrained.convert --source DIR  # DIR holds MSD_musicnn/ and MTT_musicnn/ (musicnn's package)

For each model it reads the checkpoint with :mod:`mgc.models.pretrained.tf_checkpoint`
(no TensorFlow), keeps the model variables (the Adam slots, ``beta1_power`` and
``beta2_power`` are dropped), renames them to the Flax module's names, checks
every shape against :class:`mgc.models.nets.musicnn.Musicnn`, and writes
``musicnn_msd.npz`` / ``musicnn_mtt.npz`` atomically beside this file, with
musicnn's licence as ``LICENSE-musicnn.md``.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: TensorFlow layer scope -> the Flax module's attribute, in the order build_musicnn creates them.
LAYERS = {
    "batch_normalization": "input_bn",
    "conv2d": "timbral_74",
    "batch_normalization_1": "timbral_74_bn",
    "conv2d_1": "timbral_77",
    "batch_normalization_2": "timbral_77_bn",
    "conv2d_2": "temporal_128",
    "batch_normalization_3": "temporal_128_bn",
    "conv2d_3": "temporal_64",
    "batch_normalization_4": "temporal_64_bn",
    "conv2d_4": "temporal_32",
    "batch_normalization_5": "temporal_32_bn",
    "conv2d_5": "mid_1",
    "batch_normalization_6": "mid_1_bn",
    "conv2d_6": "mid_2",
    "batch_normalization_7": "mid_2_bn",
    "conv2d_7": "mid_3",
    "batch_normalization_8": "mid_3_bn",
    "batch_normalization_9": "pool_bn",
    "dense": "dense",
    "batch_normalization_10": "dense_bn",
    "dense_1": "out",
}
FIELDS = {
    "kernel": "kernel",
    "bias": "bias",
    "gamma": "scale",
    "beta": "bias",
    "moving_mean": "mean",
    "moving_variance": "var",
}
CHECKPOINTS = {"MSD_musicnn": "musicnn_msd.npz", "MTT_musicnn": "musicnn_mtt.npz"}


def convert_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """The Flax-named float32 weights of one musicnn checkpoint (``prefix``: e.g. ``.../MSD_musicnn/``)."""
    from mgc.models.pretrained.tf_checkpoint import read_checkpoint

    tensors = read_checkpoint(prefix)
    out = {}
    for name, value in tensors.items():
        scope, _, field = name.rpartition("/")
        if "Adam" in field or name in ("beta1_power", "beta2_power") or "/" in scope:
            continue  # optimiser state, not the model
        if scope not in LAYERS or field not in FIELDS:
            raise ValueError(f"unexpected variable {name!r} in {prefix}")
        out[f"{LAYERS[scope]}/{FIELDS[field]}"] = value.astype(np.float32)
    _check_shapes(out)
    return out


def _check_shapes(weights: dict[str, np.ndarray]) -> None:
    from flax import nnx

    from mgc.models.pretrained.musicnn import Musicnn

    model = Musicnn(n_classes=weights["out/kernel"].shape[1], rngs=nnx.Rngs(0))
    expected = {"/".join(map(str, k)): v.get_value().shape for k, v in nnx.to_flat_state(nnx.state(model))}
    if set(expected) != set(weights):
        raise ValueError(f"names differ: {sorted(set(expected) ^ set(weights))}")
    for key, shape in expected.items():
        if weights[key].shape != shape:
            raise ValueError(f"{key}: checkpoint shape {weights[key].shape}, module shape {shape}")


def _download(folder: Path) -> Path:
    """Musicnn 0.1.0 from PyPI (no dependencies), unpacked into ``folder``; returns its package folder."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "musicnn==0.1.0", "--no-deps", "-d", str(folder)], check=True
    )
    [archive] = list(folder.glob("musicnn-0.1.0*"))
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            wheel.extractall(folder / "unpacked")
        return folder / "unpacked" / "musicnn"
    import tarfile

    with tarfile.open(archive) as sdist:
        sdist.extractall(folder / "unpacked", filter="data")
    return next((folder / "unpacked").glob("musicnn-*/musicnn"))


def _licence(source: Path) -> str:
    for candidate in (
        *source.parent.glob("musicnn-*.dist-info/LICENSE*"),
        *source.parent.glob("LICENSE*"),
        *source.parent.parent.glob("LICENSE*"),
    ):
        return candidate.read_text()
    raise FileNotFoundError(f"no licence file next to {source}")


def main(argv: list[str] | None = None) -> None:
    from mgc.engine import atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="musicnn's package folder (holding MSD_musicnn/, MTT_musicnn/).")
    parser.add_argument("--out", type=Path, default=HERE, help="Where to write the .npz files (default: beside this).")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temp:
        source = args.source or _download(Path(temp))
        args.out.mkdir(parents=True, exist_ok=True)
        for folder, filename in CHECKPOINTS.items():
            weights = convert_checkpoint(f"{source / folder}/")

            def write(path: str, weights=weights) -> None:
                buffer = io.BytesIO()
                np.savez_compressed(buffer, **weights)
                Path(path).write_bytes(buffer.getvalue())

            atomic.write_atomic(args.out / filename, write)
            n = sum(v.size for v in weights.values())
            print(f"{folder}: {len(weights)} arrays, {n:,} values -> {args.out / filename}")
        notice = (
            "The files musicnn_msd.npz and musicnn_mtt.npz are the weights of musicnn's MSD_musicnn and\n"
            "MTT_musicnn models (https://github.com/jordipons/musicnn, PyPI musicnn 0.1.0), converted by\n"
            "models/pretrained/convert.py. They are distributed under musicnn's licence:\n\n" + _licence(source)
        )
        atomic.write_text(args.out / "LICENSE-musicnn.md", notice)


if __name__ == "__main__":
    main()
