"""Fine-tuning a pretrained backbone together with its head (``mgc train STORE --backbone NAME --fine-tune N``).

A head is first fitted on the frozen backbone's vectors (:func:`mgc.models.training.heads.train_head`);
its standardisation and layers then sit on top of the backbone's penultimate
layer and both are trained end to end, the usual "linear probe, then fine-tune":

- **input**: 3 s patches (187 frames of the backbone's 96-band log-mel) of
  the training tracks: each track's log-mel is computed once, from the store
  when it was extracted with the backbone's spec (``mgc extract --preset
  musicnn``), otherwise from its audio file, and up to ``max_patches`` (8)
  evenly spaced patches covering it are held in memory as float16 (36 KB a
  patch: at most 288 KB a track, 288 MB for 1,000 tracks). A pass takes one
  of them at random per track, in batches of ``batch_size``. The patches of
  the training and validation tracks must fit in ``memory_limit_mb`` (checked
  from the tracks' durations before anything is read).
- **network**: the backbone in inference mode (its BatchNorm statistics stay
  the published ones: a few hundred tracks are too few to re-estimate them;
  the input BatchNorm's scale and offset stay too), the head's fixed
  standardisation, then the head's layers.
- **objective**: the head's, ``mean log-loss + 0.5 * |W_head|^2 / (C * n)``,
  with Adam (warm-up, then cosine decay from ``lr``) on every parameter and the
  gradient norm clipped to 1. The default ``lr`` is 1e-5: with the BatchNorm
  statistics fixed, Adam's first steps move every weight by about ``lr``, and
  at 1e-4 two steps took the training loss on real clips from 0.01 to 40.
- **selection**: the validation accuracy per track after every pass, as the
  head predicts (a patch head: the mean of the held patches' probabilities; a
  track head: the mean penultimate vector over them). The best pass is kept, the frozen
  start (pass 0) included, so fine-tuning never returns a worse model on the
  validation split than the frozen head. Without validation tracks the last
  pass is kept.

This is for the small labelled sets it helps most (hundreds to a few thousand
tracks): a pass costs about 3 forward passes of the backbone per track (about
8 GFLOP per patch), and the log-mel is held in memory. A run is not resumable
part-way; the vector cache of the frozen stage is.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from mgc.models.data.inputs import decode_logmel
from mgc.models.data.pipeline import eval_crops as covering_crops
from mgc.models.errors import ModelError
from mgc.models.kinds.featurizers import holds_backbone_input
from mgc.models.nets.heads import head_logits, head_penalty
from mgc.models.nets.musicnn import PATCH_FRAMES
from mgc.models.pretrained.musicnn import MUSICNN_SPEC, load_musicnn, musicnn_arrays

__all__ = ["fine_tune"]

PATCH_BYTES = 187 * 96 * 2


def _track_logmels(store: Any, rows: np.ndarray, *, workers=None) -> Iterator[np.ndarray | None]:
    """The backbone's log-mel ``(n_frames, 96)`` float16 of each of ``rows``, one at a time (None where it failed)."""
    if holds_backbone_input(store):
        for _row, logmel in store.iter_tracks("logmel", rows=rows):
            yield logmel.astype(np.float16)
        return
    tracks = store.tracks
    keys = [(tracks.track_id[row], tracks.path[row], None) for row in rows]
    for _key, value in decode_logmel(MUSICNN_SPEC, keys, workers=workers):
        yield None if isinstance(value, BaseException) else value.astype(np.float16)


def fine_tune(
    store: Any,
    head: Any,
    train_rows: np.ndarray,
    valid_rows: np.ndarray,
    *,
    epochs: int,
    lr: float = 1e-5,
    c: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    max_patches: int = 8,
    memory_limit_mb: float = 4096.0,
    workers: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Train ``head``'s backbone and layers together on ``train_rows`` of ``store`` (see the module docstring).

    Parameters
    ----------
    store : engine.FeatureStore
    head : mgc.models.kinds.head.HeadModel
        Fitted on the frozen backbone's vectors: its ``featurizer`` names the
        backbone, its ``mean``/``std`` stay fixed, its layers are the start.
    train_rows, valid_rows : ndarray of int
        Store rows of the training and validation tracks.
    epochs : int
        Passes over the training tracks (one random patch of each per pass).
    lr : float
        Peak Adam learning rate.
    c : float
        The head's inverse L2 strength.
    batch_size : int
        Patches per step.
    max_patches : int
        Most patches held per track (training and validation).
    memory_limit_mb : float
        What the held patches may take.

    Returns
    -------
    dict
        ``params`` (the head's tuned layers, NumPy), ``backbone`` (the tuned
        backbone's variables as ``.npz`` bytes), ``best_epoch`` (0: the frozen
        start was best), ``history`` (per pass: ``epoch``, ``train_loss``,
        ``valid_accuracy``), ``train_accuracy`` (of the kept parameters on the
        first patch of each track), ``valid_accuracy``, ``steps``, ``seconds`` (all of it)
        and ``step_seconds`` (the median training step, compilation excluded).
    """
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from mgc.engine import ProgressReporter

    if epochs < 1:
        raise ModelError(f"fine-tuning needs at least 1 epoch, got {epochs}")
    start_time = time.perf_counter()
    rows = np.concatenate([train_rows, valid_rows]).astype(np.int64)
    counts = np.clip(np.ceil(store.tracks.duration[rows] / 3.0), 1, max_patches)
    needed = float(counts.sum()) * PATCH_BYTES / 2**20
    if needed > memory_limit_mb:
        raise ModelError(
            f"fine-tuning holds up to {max_patches} patches of each of its {len(rows):,} training and validation "
            f"tracks in memory: {needed:,.0f} MB, over the limit of {memory_limit_mb:,.0f} MB. Fine-tune on a "
            "sample of the tracks (--split-file), or keep the backbone frozen: its head scales to any size"
        )
    report = ProgressReporter(progress, "fine-tune", "steps")
    labels = store.tracks.label

    def held(rows: np.ndarray) -> list:
        logmels = _track_logmels(store, rows, workers=workers)
        return [
            (covering_crops(x, PATCH_FRAMES, max_patches), int(labels[r]))
            for x, r in zip(logmels, rows)
            if x is not None
        ]

    train, valid = held(train_rows), held(valid_rows)
    if not train:
        raise ModelError("no training track could be read for fine-tuning")

    module = load_musicnn(head.featurizer)
    graphdef, backbone, batch_stats = nnx.split(module, nnx.Param, nnx.BatchStat)
    params = {"backbone": nnx.to_pure_dict(backbone), "head": {k: jnp.asarray(v) for k, v in head.params.items()}}
    batch_stats = nnx.to_pure_dict(batch_stats)
    mean, std = jnp.asarray(head.mean), jnp.asarray(head.std)
    n_classes, n_train = len(head.label_names), len(train)
    scale = 1.0 / (c * n_train)
    batch = min(batch_size, n_train)
    steps_per_epoch = -(-n_train // batch)
    total = epochs * steps_per_epoch
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(total // 10, 1), max(total, 2), lr * 0.01)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    opt_state = tx.init(params)

    def embed(backbone_params, x):
        model = nnx.merge(graphdef, backbone_params, batch_stats)
        model.eval()  # the published BatchNorm statistics stay
        return model.embed(x)

    def logits_of(params, x):
        # The input BatchNorm (2 numbers) stays as published: with no gradient to pass to the input, the first
        # convolutions' input gradients are never computed (they were 2/3 of a step's time on the CPU).
        backbone = dict(params["backbone"], input_bn=jax.lax.stop_gradient(params["backbone"]["input_bn"]))
        return head_logits(params["head"], (embed(backbone, x) - mean[None, :]) / std[None, :])

    def loss_fn(params, x, y):
        logits = logits_of(params, x)
        loss = optax.softmax_cross_entropy(logits, jax.nn.one_hot(y, n_classes)).mean()
        return loss + scale * head_penalty(params["head"]), logits

    @jax.jit
    def step(params, opt_state, x, y):
        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, (logits.argmax(-1) == y).mean()

    embed_jit, logits_jit = jax.jit(embed), jax.jit(logits_of)

    if valid:  # gathered once: every pass embeds the same patches
        owner = np.repeat(np.arange(len(valid)), [len(x) for x, _ in valid])
        patches = np.concatenate([x for x, _ in valid]).astype(np.float32)
        valid_labels = np.array([y for _, y in valid])

    def valid_accuracy(params) -> float | None:
        if not valid:
            return None
        out = []
        for i in range(0, len(patches), 64):  # one compiled shape: the last chunk is padded
            chunk = np.zeros((64,) + patches.shape[1:], np.float32)
            chunk[: len(patches[i : i + 64])] = patches[i : i + 64]
            out.append(np.asarray(embed_jit(params["backbone"], chunk))[: len(patches[i : i + 64])])
        embeddings = np.concatenate(out)
        layers = {k: np.asarray(v) for k, v in params["head"].items()}
        if getattr(head, "level", "track") == "patch":  # as a patch head predicts: its patches' mean probability
            logits = head_logits(layers, (embeddings - np.asarray(mean)) / np.asarray(std))
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            sums = np.zeros((len(valid), p.shape[1]))
            np.add.at(sums, owner, p / p.sum(axis=1, keepdims=True))
            return float((sums.argmax(1) == valid_labels).mean())
        sums = np.zeros((len(valid), embeddings.shape[1]))
        np.add.at(sums, owner, embeddings)
        vectors = (sums / np.bincount(owner)[:, None] - np.asarray(mean)) / np.asarray(std)
        predicted = head_logits(layers, vectors).argmax(1)
        return float((predicted == valid_labels).mean())

    rng = np.random.default_rng([seed, 1])
    best_accuracy = valid_accuracy(params)
    host = lambda tree: jax.tree.map(np.asarray, tree)  # noqa: E731
    best, best_epoch = host(params), 0
    history = [{"epoch": 0, "train_loss": None, "valid_accuracy": best_accuracy}]
    report("start", 0, total)
    done, step_seconds = 0, []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n_train)
        losses = []
        for first in range(0, n_train, batch):
            take = order[first : first + batch]
            if len(take) < batch:  # one compiled shape: fill the last batch from the start of the pass
                take = np.concatenate([take, order[: batch - len(take)]])
            x = np.stack([train[i][0][rng.integers(len(train[i][0]))] for i in take]).astype(np.float32)
            y = np.array([train[i][1] for i in take])
            began = time.perf_counter()
            params, opt_state, loss, _accuracy = step(params, opt_state, x, y)
            losses.append(float(loss))  # waits for the step
            step_seconds.append(time.perf_counter() - began)
            done += 1
            report("update", done, total, {"loss": losses[-1], "epoch": epoch})
        accuracy = valid_accuracy(params)
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "valid_accuracy": accuracy})
        if accuracy is None or accuracy > best_accuracy:
            best, best_epoch, best_accuracy = host(params), epoch, accuracy
    report("end", done, total)

    # Training accuracy of the kept parameters, on the first patch of each training track.
    hits = 0
    for first in range(0, n_train, batch):
        take = np.arange(first, min(first + batch, n_train))
        take = np.concatenate([take, np.zeros(batch - len(take), np.int64)])
        x = np.stack([train[i][0][0] for i in take]).astype(np.float32)
        predicted = np.asarray(logits_jit(best, x)).argmax(1)[: min(batch, n_train - first)]
        hits += int((predicted == np.array([train[i][1] for i in take])[: len(predicted)]).sum())

    tuned = nnx.merge(graphdef, best["backbone"], batch_stats)
    buffer = io.BytesIO()
    np.savez(buffer, **musicnn_arrays(tuned))
    return {
        "params": {k: np.asarray(v, np.float32) for k, v in best["head"].items()},
        "backbone": buffer.getvalue(),
        "best_epoch": best_epoch,
        "history": history,
        "train_accuracy": hits / n_train,
        "valid_accuracy": best_accuracy,
        "steps": done,
        "seconds": time.perf_counter() - start_time,
        # The median step after the first (which compiles).
        "step_seconds": float(np.median(step_seconds[1:] or step_seconds)),
    }
