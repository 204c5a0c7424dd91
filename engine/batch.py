"""Features of many audio files on every core, in input order: the engine side of batch prediction.

``map_features`` hands chunks of files to the engine's worker pool (or runs them
here with one worker) and yields each file's features, or why it could not be
used, in the order given. At most a few chunks per worker are in flight, so
memory stays bounded whatever the number of files.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool

from .errors import AudioError
from .features import compute_features
from .spec import FeatureSpec
from .workers import default_workers, make_pool, one_thread_environment, started_pool

__all__ = ["map_features"]


def _chunk(paths: list, spec: dict, offset, duration) -> list:
    """Worker side: ``(path, features dict)`` or ``(path, (kind, detail))`` per file."""
    spec_ = FeatureSpec.from_dict(spec)
    out = []
    for path in paths:
        try:
            out.append((path, compute_features(path, spec_, offset=offset, duration=duration)))
        except AudioError as exc:
            out.append((path, (exc.kind, exc.detail)))
        except Exception as exc:  # one file never stops the others
            out.append((path, ("internal", f"{type(exc).__name__}: {exc}")))
    return out


def _rebuild(path, value):
    if isinstance(value, tuple):
        return AudioError(value[0], path, value[1])
    return value


def map_features(
    paths: Iterable,
    spec: FeatureSpec,
    *,
    workers: int | None = None,
    chunk_size: int = 8,
    offset: float | None = None,
    duration: float | None = None,
    executor=None,
) -> Iterator[tuple[str, dict | AudioError]]:
    """Compute the features of many files in parallel; yield ``(path, features or AudioError)`` in input order.

    Parameters
    ----------
    paths : iterable of str
        Audio files (consumed lazily).
    spec : FeatureSpec
        What to compute (``compute_features``' numbers exactly).
    workers : int, optional
        Worker processes (default: all cores); 1 computes in this process.
    chunk_size : int
        Files per task.
    offset, duration : float, optional
        Window of each file to use, in seconds.
    executor : concurrent.futures.Executor, optional
        Run the chunks there instead of on a pool of ours: a Dask client's
        ``get_executor()`` (see ``engine.cluster``). ``workers`` then only sets
        how many chunks are in flight (two per worker). A chunk whose worker
        died (Dask's ``KilledWorker``) is recorded as ``crashed``.

    Yields
    ------
    path : str
    result : dict of str to np.ndarray, or AudioError
        ``{feature: (n_frames, n_bins) float32}`` as :func:`engine.compute_features`
        returns it, or the reason the file could not be used (kind ``crashed``
        when a worker process died on its chunk).
    """
    workers = workers or default_workers()
    spec_dict = spec.to_dict()
    iterator = iter(paths)

    def chunks():
        while True:
            part = [str(p) for _, p in zip(range(chunk_size), iterator)]
            if not part:
                return
            yield part

    if workers == 1 and executor is None:
        for part in chunks():
            for path, value in _chunk(part, spec_dict, offset, duration):
                yield path, _rebuild(path, value)
        return
    own = executor is None
    pool = (started_pool(workers) or make_pool(workers)) if own else executor
    pending: deque = deque()  # (chunk, future), at most two chunks per worker in flight
    source = chunks()

    def submit(part: list) -> None:
        with one_thread_environment():  # workers are spawned by the submits
            pending.append((part, pool.submit(_chunk, part, spec_dict, offset, duration)))

    try:
        for part in source:
            submit(part)
            if len(pending) >= 2 * workers:
                break
        while pending:
            part, future = pending.popleft()
            try:
                results = future.result()
            except Exception as exc:
                if not (isinstance(exc, BrokenProcessPool) or type(exc).__name__ == "KilledWorker"):
                    raise
                died = ("crashed", "a worker process died while reading this file or another of its chunk")
                results = [(p, died) for p in part]
                if own:  # a broken pool of ours runs nothing more: a fresh one takes the chunks in flight
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = make_pool(workers)
                    again = [p for p, _ in pending]
                    pending.clear()
                    for retry in again:
                        submit(retry)
            for path, value in results:
                yield path, _rebuild(path, value)
            following = next(source, None)
            if following is not None:
                submit(following)
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
        else:
            for _part, future in pending:
                future.cancel()
