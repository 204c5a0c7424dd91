"""Frozen configurations for the genre model and its training run.

Both configs round-trip through plain JSON (``to_dict``/``from_dict``) so that
a checkpoint carries the exact settings that produced it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from mgc.models.errors import ModelError

__all__ = [
    "BACKBONES",
    "BUILTIN_MODELS",
    "DEFAULT_BACKBONE",
    "EMBED_INDEXES",
    "EVAL_SPLITS",
    "FEATURIZERS",
    "HEADS",
    "LEVELS",
    "INFER_BATCH",
    "INFERENCE_BATCH",
    "HeadConfig",
    "ModelConfig",
    "ModelError",
    "TrainConfig",
    "tiny_model_config",
]

#: The built-in pretrained networks, usable by name wherever a model folder is.
BUILTIN_MODELS = ("musicnn-msd", "musicnn-mtt")
#: Pretrained backbones a head can sit on: a built-in network's penultimate layer (its name), its pooled
#: mid-end (``-pool``), or both networks' penultimate layers joined (``musicnn-msd+mtt``); see
#: :data:`mgc.models.kinds.featurizers.BACKBONE_PARTS`. ``musicnn`` names the one measured best on short
#: clips of held-apart recordings (:data:`DEFAULT_BACKBONE`; docs/benchmarks.md#short-clips).
BACKBONES = ("musicnn", "musicnn-msd", "musicnn-mtt", "musicnn-msd-pool", "musicnn-mtt-pool", "musicnn-msd+mtt")
#: What ``--backbone musicnn`` stands for (a head's folder records this name, not the alias).
DEFAULT_BACKBONE = "musicnn-msd-pool"
#: What a head is fitted on: one vector per patch (3 s) of each track, or one per track.
LEVELS = ("patch", "track")
#: What makes a head's one vector per track: the store's statistics or a backbone.
FEATURIZERS = ("stats", *BACKBONES)
#: A head's layers: logistic regression, or one hidden ReLU layer before it.
HEADS = ("linear", "mlp")
#: Splits ``evaluate`` accepts: the model's saved splits, or every labelled track.
EVAL_SPLITS = ("train", "valid", "test", "all")
#: ``embed``'s approximate-index choices.
EMBED_INDEXES = ("auto", "ann", "none")
#: Crops per network call in prediction, embedding and evaluation.
INFER_BATCH = 256  # crops per network call on a CPU (models.devices.inference_batch)
#: Crops per network call when none is given, by backend (``models.devices.inference_batch``): on a CPU
#: 256 keeps the cores busy; a GPU or TPU wants thousands of crops in flight.
INFERENCE_BATCH = {"cpu": INFER_BATCH, "accelerator": 2048}


@dataclass(frozen=True)
class HeadConfig:
    """Defaults of a head on one vector per track (``mgc train --model stats`` or ``--backbone NAME``).

    The fields are :func:`mgc.models.train_head`'s keyword arguments of the same names.
    """

    featurizer: str = "stats"
    level: str = "patch"
    patches: int = 8
    head: str = "linear"
    hidden: int = 256
    c: float = 1.0
    max_iter: int = 500
    fine_tune_epochs: int = 0
    fine_tune_lr: float = 1e-5


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ModelError(f"unknown {cls.__name__} fields {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the short-chunk CNN.

    Parameters
    ----------
    n_mels : int
        Mel bands of the input log-mel (the store's ``spec.n_mels``).
    n_classes : int
        Number of genres.
    widths : tuple of int
        Output channels of each conv block; the number of blocks is the depth.
        Each block halves time and frequency with a 2x2 max-pool.
    dense : int
        Width of the hidden dense layer of the head (0: no hidden layer).
    dropout : float
        Dropout rate before the output layer.
    """

    n_mels: int = 128
    n_classes: int = 10
    widths: tuple[int, ...] = (32, 64, 64, 128, 128)
    dense: int = 128
    dropout: float = 0.3

    def __post_init__(self) -> None:
        if self.n_mels < 2 ** len(self.widths):
            raise ModelError(f"n_mels={self.n_mels} is too small for {len(self.widths)} 2x2 pooling blocks")
        if self.n_classes < 2:
            raise ModelError(f"need at least 2 classes, got {self.n_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)

    @classmethod
    def with_widths(cls, text: str | None) -> ModelConfig | None:
        """A config of the channels per block written ``16,32,64`` (``mgc train --widths``); None for none.

        ``n_mels`` is a placeholder, as ``n_classes``: :func:`mgc.models.train` takes both from the store.
        """
        if text is None:
            return None
        try:
            widths = tuple(int(w) for w in text.split(","))
        except ValueError:
            widths = ()
        if not widths or min(widths) < 1:
            raise ModelError(f"--widths takes comma-separated positive integers such as 16,32,64, got {text!r}")
        return cls(widths=widths, n_mels=2 ** len(widths))


def tiny_model_config(n_mels: int = 16, n_classes: int = 3, dropout: float = 0.0) -> ModelConfig:
    """A model small enough that tests compile and run it in a second or two."""
    return ModelConfig(n_mels=n_mels, n_classes=n_classes, widths=(4, 8), dense=8, dropout=dropout)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Parameters
    ----------
    epochs : int
        Passes over the training tracks (one random crop per track per epoch).
    batch_size : int
        Global batch size; must be a multiple of the number of devices.
    lr : float
        Peak learning rate of the warm-up + cosine schedule.
    weight_decay : float
        AdamW decoupled weight decay (applied to kernels only, not biases or norms).
    warmup_fraction : float
        Fraction of all steps spent warming the learning rate up from 0.
    clip_norm : float
        Global gradient-norm clip.
    crop_seconds : float
        Length of the random training crops.
    seed : int
        Seeds the initialisation, the splits, crops, augmentation and dropout.
    parallel : str
        ``"jit"`` (a jitted step over a device mesh) or ``"pmap"``.
    time_masks, freq_masks : int
        SpecAugment-style masks per example; each spans up to ``max_time_mask``
        frames or ``max_freq_mask`` bands.
    mixup_alpha : float
        Beta(alpha, alpha) mixup of pairs within a batch; 0 turns it off.
    val_fraction, test_fraction : float
        Share of each label's tracks held out when the store has no split column.
    eval_crops : int
        Most evenly spaced crops per track when validating.
    prefetch : int
        Batches assembled ahead of the step by the background thread.
    memory_limit_mb : float
        Log-mel the training input may hold (in the store's dtype): the whole
        training split, read once, when it fits; otherwise two shuffle windows
        of whole shards of half this size each (see ``mgc.models.data.pipeline``).
    crops_per_track : int
        Random crops taken from each training track per pass over the tracks; 0
        (default): ``ceil(4096 / training tracks)`` between 1 and 8, so that a small
        set gets enough steps per epoch (see
        ``mgc.models.data.pipeline.auto_crops_per_track``) and a large one one crop.
    epoch_examples : int
        Examples per epoch (validation and the per-epoch checkpoint); 0: one pass,
        ``n_train_tracks * crops_per_track``. An epoch may end within a pass.
    steps : int
        Optimizer steps of the whole run; 0: ``epochs`` epochs.
    readers : int
        Threads reading a shuffle window's shards.
    reader_processes : int
        Processes that assemble the batches (``mgc.models.data.readers``): 0 (default)
        assembles them in a thread of the training process, which one core bounds
        (about 13,000 examples/s); an accelerator needs many. The batches are the same.
    precision : str
        ``"auto"`` (default): ``"bfloat16"`` on a GPU or TPU, ``"float32"`` on a CPU,
        resolved when the run starts and saved resolved. ``"bfloat16"``: convolutions
        and dense layers compute in bfloat16 while parameters, optimizer state,
        BatchNorm statistics and the loss stay float32.
    checkpoint_every : int
        Also save the latest checkpoint every this many steps (0: only per epoch).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    clip_norm: float = 1.0
    crop_seconds: float = 3.0
    seed: int = 0
    parallel: str = "jit"
    time_masks: int = 1
    max_time_mask: int = 20
    freq_masks: int = 1
    max_freq_mask: int = 16
    mixup_alpha: float = 0.2
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    eval_crops: int = 8
    prefetch: int = 4
    memory_limit_mb: float = 4096.0
    checkpoint_every: int = 0
    crops_per_track: int = 0
    epoch_examples: int = 0
    steps: int = 0
    readers: int = 2
    precision: str = "auto"
    reader_processes: int = 0

    def __post_init__(self) -> None:
        if self.parallel not in ("jit", "pmap"):
            raise ModelError(f"--parallel must be 'jit' or 'pmap', got {self.parallel!r}")
        from mgc.engine import MgcError, check_at_least  # the CLI's wording, with the field's name

        try:
            for name, low, strict in (("epochs", 1, False), ("batch_size", 1, False), ("lr", 0, True)):
                check_at_least(name, getattr(self, name), low, strict=strict)
            check_at_least("crop_seconds", self.crop_seconds, 0, strict=True)
        except MgcError as error:
            raise ModelError(str(error)) from None
        if not 0 <= self.val_fraction + self.test_fraction < 1:
            raise ModelError("val_fraction + test_fraction must be in [0, 1)")
        if self.crops_per_track < 0 or self.readers < 1 or self.steps < 0 or self.epoch_examples < 0:
            raise ModelError("readers must be at least 1; crops_per_track, steps and epoch_examples at least 0")
        if self.precision not in PRECISIONS:
            raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.reader_processes < 0:
            raise ModelError(f"reader_processes must be at least 0, got {self.reader_processes}")
        if self.memory_limit_mb <= 0:
            raise ModelError(f"memory_limit_mb must be positive, got {self.memory_limit_mb}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)


# Choices and defaults the CLI shows (``mgc train/evaluate/predict/embed/similar/report/demo``);
# the library functions' defaults name these too, so that the two cannot drift.
__all__ += [
    "CHECKPOINTS",
    "DEMO_OUT",
    "EMBED_DTYPE",
    "EMBED_INDEX",
    "MODEL_KINDS",
    "NEAREST_K",
    "PARALLELS",
    "PRECISIONS",
    "REPORT_SAMPLE",
    "TOP_K",
]

#: ``mgc train --model``: the short-chunk CNN, or a head on per-track statistics (``--backbone`` picks the others).
MODEL_KINDS = ("cnn", "stats")
#: ``TrainConfig.parallel``'s choices.
PARALLELS = ("jit", "pmap")
#: ``TrainConfig.precision``'s choices.
PRECISIONS = ("auto", "float32", "bfloat16")
#: The checkpoints a model folder keeps: the best by validation accuracy, and the latest.
CHECKPOINTS = ("best", "latest")
#: Genres per track that ``predict`` returns.
TOP_K = 3
#: Neighbours per query: ``similar``'s results and ``evaluate``'s genre precision at k.
NEAREST_K = 10
#: ``embed``'s stored precision of the vectors (one of ``engine.vectors.DTYPES``).
EMBED_DTYPE = "float16"
#: ``embed``'s default approximate-index policy (one of ``EMBED_INDEXES``).
EMBED_INDEX = "auto"
#: Tracks ``report`` reads for its spectra, examples and map.
REPORT_SAMPLE = 2000
#: ``run_demo``'s folder.
DEMO_OUT = "mgc-demo"
