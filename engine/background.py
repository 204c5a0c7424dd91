"""Run an iterator in a background thread, a bounded number of items ahead.

The one producer thread of mgc: the engine decodes audio ahead of the feature
kernels with it, and the models assemble training batches ahead of the step.
The work inside (soundfile, soxr, h5py, numpy copies, Numba kernels with
``nogil``) releases the GIL, so producer and consumer run at the same time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["background"]

_DONE = object()


def background(items: Iterable[Any], size: int = 4, *, name: str = "mgc-background") -> Iterator[Any]:
    """Yield the items of ``items``, produced by a background thread up to ``size`` ahead.

    An exception in the producer is re-raised in the consumer at the position it
    happened; closing the returned generator (or breaking out of the loop) stops
    the producer and joins it. ``size <= 0`` iterates in the calling thread.
    """
    if size <= 0:
        yield from items
        return
    out: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as error:  # handed to the consumer, which re-raises it
            put((_DONE, error))
        finally:
            close = getattr(items, "close", None)
            if stop.is_set() and close is not None:
                try:
                    close()
                except Exception:  # a generator stopped mid-way may object; it is being discarded
                    pass

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = out.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()
