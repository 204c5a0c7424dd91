"""Inputs of prediction and embedding: audio files, folders and manifests, decoded for a model's FeatureSpec.

Decoding runs on the engine's worker processes (``engine.map_features``) or on
an executor (a Dask client's); results come back in input order, a file that
could not be used as the exception that says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["check_sources", "decode_features", "decode_logmel", "describe_error", "entries"]


def check_sources(inputs: Sequence, store: Any) -> None:
    """Refuse both audio ``inputs`` and a ``store``, or neither: a run reads exactly one of the two."""
    from mgc.models.errors import ModelError

    if not inputs and store is None:
        raise ModelError("give audio files, folders or manifests, or --store STORE")
    if inputs and store is not None:
        raise ModelError("give either inputs or --store, not both")


def entries(inputs: Sequence, skip=frozenset(), *, resolve: bool = False, all_files: bool = False) -> list[tuple]:
    """``(track_id, path, label)`` of audio files, folders (searched recursively) and CSV manifests.

    A plain file's track id is its path as given, or with ``resolve`` its
    resolved absolute path (an identity that does not depend on the working
    folder nor on how the file was named). A folder lists what ``mgc extract``
    lists (``engine.corpus.folder_tracks``: a directory named like audio or a
    dangling symlink included, to fail with a reason when decoded) and labels
    it the same way (a folder per label, top-level strays unlabelled with a
    warning); each id is the folder as given joined with the relative path, or
    its resolved path with ``resolve``. A manifest gives its own ids and labels,
    and needs no ``label`` column. Entries whose track id is in ``skip`` are
    left out; a missing label is ``""``. ``all_files`` lists every file of a
    folder, not only known audio extensions (``folder_tracks``).

    Raises
    ------
    ModelError
        When the inputs name no audio file at all.
    CorpusError
        For a malformed manifest.

    Warns
    -----
    MgcWarning
        As ``load_corpus`` does: stray files of a labelled folder, empty labels of a manifest.
    """
    from mgc.engine import folder_tracks, load_corpus
    from mgc.models.errors import ModelError

    found = []
    for item in inputs:
        if str(item).lower().endswith(".csv") and Path(item).is_file():
            found += [(t.track_id, t.path, t.label or "") for t in load_corpus(item, labels_required=False)]
        elif Path(item).is_dir():
            paths = [(Path(item) / rel, label) for rel, label in folder_tracks(item, all_files=all_files)]
            found += [(os.path.realpath(p) if resolve else str(p), str(p), label or "") for p, label in paths]
        else:
            found.append((os.path.realpath(item) if resolve else str(Path(item)), str(Path(item)), ""))
    if not found:
        raise ModelError("no audio files found in the given paths")
    return [e for e in found if e[0] not in skip]


#: Inputs of at most this many files are decoded in the calling process (see :func:`decode_features`).
IN_PROCESS_FILES = 4


def decode_features(
    spec: dict[str, Any], keys: Sequence[tuple], *, workers: int | None = None, executor: Any = None
) -> Iterator[tuple]:
    """``(key, {feature: array} or error)`` of ``keys`` (``key[1]`` is the path) with ``spec``'s features, in order.

    Log-mel comes rounded as a store of the same spec holds it (``engine.compute_features``
    does that), so a model sees what it was trained on. Up to :data:`IN_PROCESS_FILES` files
    (one song, a notebook's few) are decoded in this process unless ``workers`` is given or a
    pool was started ahead (``engine.prestart_pool``, as the CLI does while JAX loads):
    starting worker processes then would cost more than the decoding (a decoder that crashes
    the process ends the run; larger runs keep each file's crash in a worker).
    """
    from mgc.engine import FeatureSpec, default_workers, map_features, prestarted

    keys = list(keys)
    small = workers is None and executor is None and len(keys) <= IN_PROCESS_FILES
    if small and not prestarted(default_workers()):
        workers = 1
    computed = map_features([k[1] for k in keys], FeatureSpec.from_dict(spec), workers=workers, executor=executor)
    for key, (_path, value) in zip(keys, computed):
        yield key, value


def decode_logmel(
    spec: dict[str, Any], keys: Sequence[tuple], *, workers: int | None = None, executor: Any = None
) -> Iterator[tuple]:
    """``(key, log-mel (n_frames, n_mels) or error)`` of ``keys`` with ``spec``: only log-mel is computed."""
    only = {**spec, "features": ["logmel"]}
    for key, value in decode_features(only, keys, workers=workers, executor=executor):
        yield key, value if isinstance(value, BaseException) else value["logmel"]


def describe_error(error: BaseException) -> str:
    """One line saying why a file could not be used, for the ``error`` field of a result."""
    from mgc.engine import AudioError, MgcError

    if isinstance(error, AudioError):  # the path is the result's own field: not repeated here
        return f"{error.kind}: {str(error).removeprefix(f'{error.path}: ')}"
    if isinstance(error, MgcError):
        return str(error)
    detail = f": {error}" if str(error) else ""
    if isinstance(error, OSError):
        return f"{type(error).__name__}{detail}"
    return f"unexpected {type(error).__name__}{detail} (please report it)"
