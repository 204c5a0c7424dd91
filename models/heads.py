"""Models on one vector per track: a statistics model, and a head on a frozen pretrained backbone.

``mgc train STORE --model stats`` and ``mgc train STORE --backbone musicnn-msd``
train a multinomial logistic regression (softmax, L2-regularised, full-batch
L-BFGS in JAX) on one vector per track:

- ``stats``: per-track means and standard deviations of the store's MFCC, of
  their frame-to-frame differences, and of its log-mel bands:
  ``2 * (2 * n_mfcc + n_mels)`` values (336 with the default spec).
- a backbone name (``musicnn-msd``, ``musicnn-mtt``): the backbone's
  penultimate layer averaged over the 3 s patches of the track, computed from
  the track's audio file with the backbone's own front-end, or read from the
  store when it holds that front-end's output (``mgc extract --preset musicnn``). The backbone is
  frozen, unless ``fine_tune_epochs`` (``--fine-tune N``) then trains it and the
  head together (see :mod:`models.finetune`).

The head (``head="linear"``, default) is that logistic regression; ``"mlp"``
puts one hidden ReLU layer of ``hidden`` units before it, trained with Adam
on minibatches under the same objective (see :func:`_fit_mlp`).

The vectors of every labelled track are computed once and cached in
``MODEL_DIR/vectors/`` (an ``engine.vectors`` store: sharded, atomic,
resumable; a second run reuses it). The objective is scikit-learn's
``LogisticRegression`` (multinomial, ``C``): ``C * sum of log-losses + 0.5 *
|W|^2`` on standardised vectors, so the two reach the same optimum.

The model folder::

    MODEL_DIR/model.json    {"kind": "head", "featurizer", "head", "hidden", "fine_tuned",
                             "label_names", "spec", "dim", "C", "vectors", "metrics"}
    MODEL_DIR/head.npz      mean, std (dim,); weights (dim or hidden, n_classes), bias (n_classes,);
                            an MLP also hidden_weights (dim, hidden), hidden_bias (hidden,)
    MODEL_DIR/backbone.npz  a fine-tuned backbone's variables, named as in the shipped weights
                            (``models/pretrained/musicnn_msd.npz``); only when fine_tuned
    MODEL_DIR/splits.json   as for the CNN
    MODEL_DIR/vectors/      the frozen backbone's (or the statistics') cached vectors (track ids are the store's);
                            elsewhere when ``vectors`` (``--vectors DIR``) names a shared folder

The probabilities of a vector ``v``: ``z = (v - mean) / std``; for an MLP
``z = max(z @ hidden_weights + hidden_bias, 0)``; ``softmax(z @ weights + bias)``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import VectorStore, VectorWriter, atomic
from mgc.models.config import FEATURIZERS, HEADS, HeadConfig, ModelError

__all__ = ["FEATURIZERS", "HeadModel", "stats_vector", "train_head"]

HEAD_FILE = "head.npz"
BACKBONE_FILE = "backbone.npz"
VECTORS = "vectors"
#: Patches per backbone call: as fast as 256 on the CPU (85 against 87 patches/s) at 1.0 GB of peak memory
#: instead of 2.7 GB (the timbral convolutions' output is 2.3 GB at 256).
BACKBONE_BATCH = 64


def head_logits(params: dict, z):
    """Logits of standardised vectors ``z`` ``(n, dim)`` under head ``params`` (works on NumPy and JAX arrays).

    ``params``: ``weights``, ``bias`` and, for an MLP, ``hidden_weights``, ``hidden_bias``.
    """
    if "hidden_weights" in params:
        z = z @ params["hidden_weights"] + params["hidden_bias"][None, :]
        z = z * (z > 0)  # ReLU that NumPy and JAX both trace
    return z @ params["weights"] + params["bias"][None, :]


def head_penalty(params: dict):
    """``0.5 * |W|^2`` over the head's weight matrices (biases are not penalised)."""
    return 0.5 * sum((params[k] ** 2).sum() for k in ("weights", "hidden_weights") if k in params)


def stats_vector(logmel: np.ndarray, mfcc: np.ndarray) -> np.ndarray:
    """Per-track statistics ``(2 * (2 * n_mfcc + n_mels),)`` of log-mel ``(T, n_mels)`` and MFCC ``(T, n_mfcc)``.

    Means and standard deviations, in this order: MFCC, MFCC frame-to-frame
    differences (zeros for a one-frame track), log-mel bands.
    """
    mfcc = np.asarray(mfcc, np.float64)
    logmel = np.asarray(logmel, np.float64)
    delta = np.diff(mfcc, axis=0) if len(mfcc) > 1 else np.zeros_like(mfcc)
    parts = [mfcc.mean(0), mfcc.std(0), delta.mean(0), delta.std(0), logmel.mean(0), logmel.std(0)]
    return np.concatenate(parts).astype(np.float32)


def _check_featurizer(featurizer: str, spec: dict) -> None:
    if featurizer not in FEATURIZERS:
        raise ModelError(f"unknown featurizer {featurizer!r}; choose one of {FEATURIZERS}")
    if featurizer == "stats" and not {"logmel", "mfcc"} <= set(spec.get("features", [])):
        raise ModelError("the stats model needs a store with both logmel and mfcc (the default spec)")


def _store_items(
    store: Any, rows: np.ndarray, featurizer: str, *, workers=None, executor=None, backbone=None
) -> Iterator:
    """``((track_id, path, label), vector or error)`` for ``rows`` of ``store``, in order.

    ``backbone``: a fine-tuned backbone's weights file instead of the shipped weights.
    A backbone reads the store's log-mel when the store holds its input
    (``mgc extract --preset musicnn``), and decodes each track's audio file otherwise.
    """
    ids, paths, labels = store.tracks.track_id, store.tracks.path, store.tracks.label_name
    if featurizer == "stats":
        pairs = zip(store.iter_tracks("logmel", rows=rows), store.iter_tracks("mfcc", rows=rows))
        for (row, logmel), (_row, mfcc) in pairs:
            yield (ids[row], paths[row], labels[row]), stats_vector(logmel, mfcc)
        return
    if holds_backbone_input(store):  # the backbone's own input is in the store: no audio is read
        from mgc.models.inference import infer
        from mgc.models.pretrained.musicnn import BuiltinModel

        stored = store.iter_tracks("logmel", rows=rows)
        items = (((ids[row], paths[row], labels[row]), logmel) for row, logmel in stored)
        for result in infer(BuiltinModel(featurizer, path=backbone), items, batch_size=BACKBONE_BATCH):
            yield result.key, (result.error if result.error is not None else result.embedding)
        return
    keys = [(ids[row], paths[row], labels[row]) for row in rows]
    yield from _backbone_items(keys, featurizer, workers=workers, executor=executor, backbone=backbone)


def holds_backbone_input(store: Any) -> bool:
    """Whether ``store`` was extracted with the backbone's spec (``mgc extract --preset musicnn``)."""
    from mgc.engine import differences
    from mgc.models.pretrained.musicnn import MUSICNN_SPEC

    return not differences(MUSICNN_SPEC, store.spec.to_dict())


def _backbone_items(keys: list, featurizer: str, *, workers=None, executor=None, backbone=None) -> Iterator:
    """``(key, vector or error)`` of audio files (``key[1]`` is the path) through a backbone.

    ``backbone``: a fine-tuned backbone's weights file (default: the shipped weights of ``featurizer``).
    """
    from mgc.models.inference import infer
    from mgc.models.predict import _decode
    from mgc.models.pretrained.musicnn import BuiltinModel

    backbone = BuiltinModel(featurizer, path=backbone)
    items = _decode(backbone, list(keys), workers=workers, executor=executor)
    for result in infer(backbone, items, batch_size=BACKBONE_BATCH):
        yield result.key, (result.error if result.error is not None else result.embedding)


def _audio_items(featurizer: str, spec: dict, keys: list, *, workers=None, executor=None, backbone=None) -> Iterator:
    """``(key, vector or error)`` of audio files for a featurizer (``spec``: the store's, for ``stats``)."""
    if featurizer != "stats":
        yield from _backbone_items(keys, featurizer, workers=workers, executor=executor, backbone=backbone)
        return
    from mgc.engine import FeatureSpec, map_features

    computed = map_features([k[1] for k in keys], FeatureSpec.from_dict(spec), workers=workers, executor=executor)
    for key, (_path, value) in zip(keys, computed):
        if isinstance(value, BaseException):
            yield key, value
        else:
            logmel = value["logmel"]
            if spec.get("logmel_dtype") == "float16":  # as the store holds it
                logmel = logmel.astype(np.float16).astype(np.float32)
            yield key, stats_vector(logmel, value["mfcc"])


def _fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    c: float,
    hidden: int,
    *,
    seed: int = 0,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    lr: float = 1e-3,
) -> tuple[dict[str, np.ndarray], int]:
    """A one-hidden-layer MLP: minimise ``(C * sum log-loss + 0.5 * |W|^2) / (C * n)`` with Adam on minibatches.

    Minibatches of ``min(512, n)`` vectors drawn with replacement; ``clip(100
    passes, 500, 4000)`` steps under a cosine-decayed learning rate, so a large
    set gets about 2 million examples whatever its size. With ``valid`` vectors,
    the parameters of the lowest validation loss (checked 20 times) are kept.

    Returns
    -------
    params : dict
        ``hidden_weights`` ``(dim, hidden)``, ``hidden_bias``, ``weights`` ``(hidden, n_classes)``, ``bias``.
    steps : int
    """
    import jax
    import jax.numpy as jnp
    import optax

    n, dim = x.shape
    batch = min(512, n)
    steps = int(np.clip(100 * -(-n // batch), 500, 4000))
    chunk = max(steps // 20, 1)
    steps = chunk * -(-steps // chunk)
    k1, k2, key = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = {
        "hidden_weights": jax.random.normal(k1, (dim, hidden)) * np.sqrt(2.0 / dim),
        "hidden_bias": jnp.zeros(hidden),
        "weights": jax.random.normal(k2, (hidden, n_classes)) * np.sqrt(1.0 / hidden),
        "bias": jnp.zeros(n_classes),
    }
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))
    opt_state = tx.init(params)
    x, y = jnp.asarray(x, jnp.float32), jax.nn.one_hot(jnp.asarray(y), n_classes)
    scale = 1.0 / (c * n)

    def loss(params, xb, yb):
        return optax.softmax_cross_entropy(head_logits(params, xb), yb).mean() + scale * head_penalty(params)

    @jax.jit
    def run(params, opt_state, key, x, y):  # `chunk` steps; the data are arguments (see _fit)
        def body(i, carry):
            params, opt_state = carry
            take = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, n)
            grads = jax.grad(loss)(params, x[take], y[take])
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        return jax.lax.fori_loop(0, chunk, body, (params, opt_state))

    if valid is not None and len(valid[0]):
        vx, vy = jnp.asarray(valid[0], jnp.float32), jax.nn.one_hot(jnp.asarray(valid[1]), n_classes)
        valid_loss = jax.jit(lambda p, vx, vy: optax.softmax_cross_entropy(head_logits(p, vx), vy).mean())
    else:
        valid_loss = None
    best, best_loss = params, np.inf
    for done in range(0, steps, chunk):
        params, opt_state = run(params, opt_state, jax.random.fold_in(key, done), x, y)
        if valid_loss is not None:
            value = float(valid_loss(params, vx, vy))
            if value < best_loss:
                best, best_loss = params, value
    params = best if valid_loss is not None else params
    return {k: np.asarray(v, np.float32) for k, v in params.items()}, steps


def _fit(x: np.ndarray, y: np.ndarray, n_classes: int, c: float, max_iter: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Multinomial logistic regression: minimise ``C * sum log-loss + 0.5 * |W|^2`` (bias not penalised)."""
    import jax
    import jax.numpy as jnp
    import optax

    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y)
    n = len(x)

    def objective(params, x, y):
        logits = x @ params["w"] + params["b"][None, :]
        # One-hot rather than integer labels: the gradient of a gather is a scatter that XLA constant-folds slowly.
        nll = -(jax.nn.log_softmax(logits, axis=-1) * jax.nn.one_hot(y, n_classes)).sum()
        return (c * nll + 0.5 * jnp.sum(params["w"] ** 2)) / n  # scaled by 1/n: same optimum

    params = {"w": jnp.zeros((x.shape[1], n_classes)), "b": jnp.zeros(n_classes)}
    solver = optax.lbfgs()
    state = solver.init(params)

    # The data are arguments, not constants closed over: XLA would otherwise fold a copy of them into the program.
    @jax.jit
    def step(params, state, x, y):
        def loss(p):
            return objective(p, x, y)

        value, grad = optax.value_and_grad_from_state(loss)(params, state=state)
        updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(params, updates), state, optax.tree.norm(grad)

    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007
        params, state, norm = step(params, state, x, y)
        if float(norm) < 1e-6:
            break
    return np.asarray(params["w"]), np.asarray(params["b"]), iterations


@dataclasses.dataclass
class HeadModel:
    """A trained head: standardisation, then a linear softmax layer (or an MLP) over a featurizer's vectors."""

    folder: Path
    featurizer: str
    label_names: list[str]
    spec: dict
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    meta: dict
    hidden_weights: np.ndarray | None = None
    hidden_bias: np.ndarray | None = None
    #: A fine-tuned backbone's weights file (None: the shipped, frozen weights).
    backbone: Path | None = None

    @classmethod
    def load(cls, folder: str | Path) -> HeadModel:
        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        with np.load(folder / HEAD_FILE, allow_pickle=False) as head:
            arrays = {k: head[k] for k in head.files}
        backbone = folder / BACKBONE_FILE if meta.get("fine_tuned") else None
        if backbone is not None and not backbone.is_file():
            raise ModelError(f"{folder} is a fine-tuned head but its {BACKBONE_FILE} is missing")
        return cls(
            folder, meta["featurizer"], list(meta["label_names"]), meta["spec"], meta=meta, backbone=backbone, **arrays
        )

    @property
    def embedding_dim(self) -> int:
        return int(self.mean.size)

    @property
    def vectors_dir(self) -> Path:
        """The cache of per-track vectors the training filled (``--vectors``; default ``MODEL_DIR/vectors``)."""
        return Path(self.meta["vectors"]) if self.meta.get("vectors") else self.folder / VECTORS

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The layers' arrays, as :func:`head_logits` takes them."""
        names = ("weights", "bias", "hidden_weights", "hidden_bias")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` of vectors ``(n, dim)``."""
        logits = head_logits(self.params, self.standardise(vectors))
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def standardise(self, vectors: np.ndarray) -> np.ndarray:
        return (np.asarray(vectors, np.float32) - self.mean) / self.std

    def audio_items(self, keys: list, *, workers=None, executor=None) -> Iterator:
        return _audio_items(
            self.featurizer, self.spec, keys, workers=workers, executor=executor, backbone=self.backbone
        )

    def store_items(self, store: Any, rows: np.ndarray) -> Iterator:
        return _store_items(store, rows, self.featurizer, backbone=self.backbone)

    def store_vectors(self, store: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of ``rows`` of ``store`` ``(n, dim)`` and a mask of those that have one.

        Read from the training's cache (``MODEL_DIR/vectors``) when it holds the
        track id, computed otherwise (always, for a fine-tuned backbone: the
        cache holds the frozen backbone's vectors).
        """
        cache = self.vectors_dir if self.backbone is None else None
        vectors, available = _from_cache(cache, store.tracks.track_id.take(rows), self.embedding_dim)
        missing = np.flatnonzero(~available)
        for position, (_key, value) in zip(missing, self.store_items(store, np.asarray(rows)[missing])):
            if not isinstance(value, BaseException):
                vectors[position], available[position] = value, True
        return vectors, available


def _from_cache(folder: Path | None, track_ids, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached vectors of ``track_ids`` ``(n, dim)`` and which of them the cache holds (none without a cache)."""
    vectors = np.zeros((len(track_ids), dim), np.float32)
    available = np.zeros(len(track_ids), bool)
    if folder is not None and (folder / "embeddings.json").exists():
        cached = VectorStore(folder)
        where = cached.rows(list(track_ids))
        available = where >= 0
        vectors[available] = cached.vectors(where[available])
    return vectors, available


def vector_dim(featurizer: str, spec: dict) -> int:
    """Length of a featurizer's vector for a store of ``spec``."""
    if featurizer == "stats":
        return 2 * (2 * int(spec["n_mfcc"]) + int(spec["n_mels"]))
    from mgc.models.pretrained.musicnn import weights_path

    # From the weights file's shape: no need to build the network the vectors pass loads anyway.
    with np.load(weights_path(featurizer), allow_pickle=False) as weights:
        return int(weights["dense/kernel"].shape[1])


def _cached_vectors(
    store: Any, rows: np.ndarray, folder: Path, featurizer: str, progress=None, workers=None, *, own: bool = True
):
    """Vectors of ``rows`` (in order) and which rows have one, computed once into ``folder`` (resumable).

    A cache of another featurizer or spec is replaced when it is the model folder's ``own``, refused otherwise.
    """
    from mgc.engine import ProgressReporter, StoreError

    spec = store.spec.to_dict()
    # What makes the vectors: the featurizer and, for the statistics, the store's spec.
    fingerprint = featurizer if featurizer != "stats" else f"stats {json.dumps(spec, sort_keys=True)}"
    meta = {
        "format": "mgc-embeddings",
        "version": 1,
        "model": {"dir": featurizer, "checkpoint": "", "step": None, "fingerprint": fingerprint},
        "dim": vector_dim(featurizer, spec),
        "dtype": "float32",
        "label_names": [],
        "spec": {},
    }
    folder.mkdir(parents=True, exist_ok=True)
    try:
        writer = VectorWriter(folder, meta, overwrite=False)
    except StoreError as error:
        if own:  # the model folder's own cache, of the head this training replaces: start it again
            writer = VectorWriter(folder, meta, overwrite=True)
        else:
            raise ModelError(
                f"{folder} holds vectors of another featurizer or feature spec than {featurizer} on this store "
                f"({error}); give another --vectors folder"
            ) from error
    ids = store.tracks.track_id
    todo = rows[~ids.take(rows).isin(list(writer.done))] if writer.done else rows
    report = ProgressReporter(progress, "vectors", "tracks")
    report("start", 0, len(todo))
    block: list = []
    failures: list = []
    done = 0

    def flush() -> None:
        if block or failures:
            writer.write(
                [k[0] for k, _ in block],
                [k[1] for k, _ in block],
                [k[2] for k, _ in block],
                np.stack([v for _, v in block]) if block else np.zeros((0, meta["dim"]), np.float32),
                failures,
            )
            block.clear()
            failures.clear()

    for key, value in _store_items(store, todo, featurizer, workers=workers):
        if isinstance(value, BaseException):
            from mgc.models.predict import describe_error

            failures.append((key[0], key[1], describe_error(value)))
        else:
            block.append((key, value))
        done += 1
        if len(block) + len(failures) >= 4096:
            flush()
            report("update", done, len(todo))
    flush()
    report("end", done, len(todo))
    return _from_cache(folder, ids.take(rows), meta["dim"])


def train_head(
    store: Any,
    out_dir: str | Path,
    featurizer: str = HeadConfig.featurizer,
    *,
    head: str = HeadConfig.head,
    hidden: int = HeadConfig.hidden,
    c: float = HeadConfig.c,
    max_iter: int = HeadConfig.max_iter,
    fine_tune_epochs: int = HeadConfig.fine_tune_epochs,
    fine_tune_lr: float = HeadConfig.fine_tune_lr,
    vectors_dir: str | Path | None = None,
    seed: int = 0,
    split_files=None,
    workers: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Train a head on one vector per track of ``store`` (see the module docstring).

    Parameters
    ----------
    store : str, Path or engine.FeatureStore
    out_dir : str or Path
        The model folder (created; its cached vectors are reused by a second run).
    featurizer : str
        ``stats``, or a backbone name (``musicnn-msd``, ``musicnn-mtt``).
    head : str
        ``linear`` (logistic regression, L-BFGS) or ``mlp`` (one hidden ReLU layer, Adam).
    hidden : int
        Hidden units of an ``mlp`` head.
    c : float
        Inverse L2 strength, as scikit-learn's ``C`` (> 0).
    max_iter : int
        L-BFGS iterations at most (linear head).
    fine_tune_epochs : int
        Backbones only: after the head is fitted on the frozen vectors, train
        the backbone and the head together for this many passes over the
        training tracks (0: keep the backbone frozen). See :mod:`models.finetune`.
    fine_tune_lr : float
        Peak Adam learning rate of the fine-tuning.
    vectors_dir : str or Path, optional
        Where to cache the per-track vectors (default ``MODEL_DIR/vectors``).
        Heads trained on the same store with the same featurizer can share one
        folder, so that the vectors (a backbone pass over every track) are
        computed once for all of them. A folder of another featurizer or spec is
        refused.
    seed, split_files :
        As for :func:`models.train` (the same splits for the same store and seed).
    workers : int, optional
        Decoding processes (backbones read the tracks' audio files).

    Returns
    -------
    dict
        ``model_dir``, ``featurizer``, ``head``, ``train_accuracy``,
        ``valid_accuracy``, ``iterations`` (L-BFGS iterations or Adam steps),
        ``seconds`` (fit only), ``vector_seconds`` and, when fine-tuned,
        ``fine_tune`` (see :func:`models.finetune.fine_tune`).
    """
    from mgc.engine import FeatureStore, ProgressReporter
    from mgc.models.layout import ModelFolder
    from mgc.models.splits import make_splits

    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    spec = store.spec.to_dict()
    _check_featurizer(featurizer, spec)
    if head not in HEADS:
        raise ModelError(f"unknown head {head!r}; choose one of {HEADS}")
    if not c > 0:
        raise ModelError(f"C must be positive, got {c}")
    if fine_tune_epochs and featurizer == "stats":
        raise ModelError("fine-tuning needs a backbone (--backbone); the stats model has no network to tune")
    if hidden < 1:
        raise ModelError(f"hidden units must be at least 1, got {hidden}")
    out_dir = Path(out_dir)
    folder = ModelFolder(out_dir)
    with folder.lock():
        splits = make_splits(store.tracks, seed=seed, split_files=split_files)
        folder.write_splits(splits)
        label_names = [str(n) for n in store.label_names]
        ids = store.tracks.track_id
        rows = {name: np.sort(ids.lookup(splits[name])).astype(np.int64) for name in ("train", "valid", "test")}
        start = time.perf_counter()
        report = ProgressReporter(progress, "train", "steps")
        # Every labelled track's vector is cached (evaluation of any split reads it back).
        every = np.concatenate([rows["train"], rows["valid"], rows["test"]])
        cache = Path(vectors_dir) if vectors_dir is not None else out_dir / VECTORS
        own = vectors_dir is None
        vectors, available = _cached_vectors(store, every, cache, featurizer, progress, workers, own=own)
        vector_seconds = time.perf_counter() - start
        labels = store.tracks.label[every]
        position = np.arange(len(every))
        is_train = position < len(rows["train"])
        is_valid = (position >= len(rows["train"])) & (position < len(rows["train"]) + len(rows["valid"]))
        train_x, train_y = vectors[available & is_train], labels[available & is_train]
        if not len(train_x):
            raise ModelError("no training vectors (every training track failed?)")
        mean = train_x.mean(0)
        std = train_x.std(0)
        std[std == 0] = 1.0
        start = time.perf_counter()
        if head == "linear":
            report("start", 0, max_iter)
            weights, bias, iterations = _fit((train_x - mean) / std, train_y, len(label_names), c, max_iter)
            params = {"weights": weights.astype(np.float32), "bias": bias.astype(np.float32)}
        else:
            valid = ((vectors[available & is_valid] - mean) / std, labels[available & is_valid])
            report("start", 0, None)
            params, iterations = _fit_mlp(
                (train_x - mean) / std, train_y, len(label_names), c, hidden, seed=seed, valid=valid
            )
        seconds = time.perf_counter() - start
        report("end", iterations, iterations)
        model = HeadModel(out_dir, featurizer, label_names, spec, mean, std, meta={}, **params)

        def accuracy(mask):
            mask = mask & available
            if not mask.any():
                return None
            return float((model.probabilities(vectors[mask]).argmax(1) == labels[mask]).mean())

        summary = {
            "model_dir": str(out_dir),
            "featurizer": featurizer,
            "head": head,
            "train_accuracy": accuracy(is_train),
            "valid_accuracy": accuracy(is_valid),
            "iterations": iterations,
            "seconds": seconds,
            "vector_seconds": vector_seconds,
        }
        if fine_tune_epochs:
            from mgc.models.finetune import fine_tune

            tuned = fine_tune(
                store,
                model,
                rows["train"],
                rows["valid"],
                epochs=fine_tune_epochs,
                lr=fine_tune_lr,
                c=c,
                seed=seed,
                workers=workers,
                progress=progress,
            )
            params = tuned.pop("params")
            atomic.write_bytes(out_dir / BACKBONE_FILE, tuned.pop("backbone"))
            summary["fine_tune"] = tuned
            summary["train_accuracy"] = tuned["train_accuracy"]
            summary["valid_accuracy"] = tuned["valid_accuracy"]
        else:
            (out_dir / BACKBONE_FILE).unlink(missing_ok=True)  # a previous run's tuned backbone
        buffer = io.BytesIO()
        np.savez(buffer, mean=mean, std=std, **params)
        atomic.write_bytes(out_dir / HEAD_FILE, buffer.getvalue())
        meta = {
            "kind": "head",
            "featurizer": featurizer,
            "head": head,
            "hidden": hidden if head == "mlp" else None,
            "fine_tuned": bool(fine_tune_epochs),
            "label_names": label_names,
            "spec": spec,
            "dim": int(mean.size),
            "C": c,
            "vectors": str(Path(vectors_dir).resolve()) if vectors_dir is not None else None,
            "metrics": summary,
        }
        atomic.write_json(out_dir / "model.json", meta, sort_keys=False)
    return summary


def is_head(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds a head (not a CNN)."""
    path = Path(model_dir) / "model.json"
    try:
        return json.loads(path.read_text()).get("kind") == "head"
    except (OSError, ValueError, AttributeError):
        return False
