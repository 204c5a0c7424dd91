"""Decode ahead in a thread so that decoding overlaps feature computation.

soundfile, soxr and the Numba kernels (``nogil=True``) release the GIL, so a
decoder thread and the computing thread run at the same time within one
worker process. The queue is bounded: memory stays a few blocks per worker.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

from .audio import AudioStream
from .errors import AudioError

__all__ = ["decoded_tracks"]

_END = object()


class _Track:
    """What the decoder thread hands over for one track: a stream or an error."""

    def __init__(self, item, stream: AudioStream | None, error: Exception | None, blocks: queue.Queue) -> None:
        self.item = item
        self.stream = stream
        self.error = error
        self._blocks = blocks

    def blocks(self) -> Iterator:
        """Decoded blocks of this track; raises the decoder's AudioError in order."""
        while True:
            block = self._blocks.get()
            if block is _END:
                return
            if isinstance(block, Exception):
                raise block
            yield block


def _decode_all(items, sr, offset, duration, out: queue.Queue, stop: threading.Event, depth: int) -> None:
    for item, path in items:
        if stop.is_set():
            return
        blocks: queue.Queue = queue.Queue(maxsize=depth)
        try:
            stream = AudioStream(path, sr, offset=offset, duration=duration)
        except AudioError as exc:
            out.put(_Track(item, None, exc, blocks))
            continue
        except Exception as exc:  # one odd file must never stop the run
            out.put(_Track(item, None, AudioError("internal", path, f"{type(exc).__name__}: {exc}"), blocks))
            continue
        out.put(_Track(item, stream, None, blocks))
        try:
            for block in stream.blocks():
                while not stop.is_set():
                    try:
                        blocks.put(block, timeout=0.1)
                        break
                    except queue.Full:
                        pass
                if stop.is_set():
                    stream.close()
                    return
            blocks.put(_END)
        except AudioError as exc:
            blocks.put(exc)
        except Exception as exc:
            blocks.put(AudioError("internal", path, f"{type(exc).__name__}: {exc}"))
    out.put(_END)


def decoded_tracks(items: Iterable, sr: int, *, offset=None, duration=None, depth: int = 4) -> Iterator[_Track]:
    """Open and decode ``(item, path)`` pairs one track ahead of the consumer.

    Yields
    ------
    _Track
        ``.item`` as given, ``.stream`` (None on error), ``.error`` (an AudioError
        raised on open) and ``.blocks()`` (mono float32 blocks at ``sr``). The
        consumer must exhaust ``.blocks()`` of one track before asking for the next.
    """
    tracks: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    thread = threading.Thread(
        target=_decode_all, args=(list(items), sr, offset, duration, tracks, stop, depth), daemon=True
    )
    thread.start()
    try:
        while True:
            track = tracks.get()
            if track is _END:
                return
            yield track
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                tracks.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
