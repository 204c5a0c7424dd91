"""Decode ahead in a thread so that decoding overlaps feature computation.

soundfile, soxr and the Numba kernels (``nogil=True``) release the GIL, so a
decoder thread and the computing thread run at the same time within one
worker process. The decoder is :func:`engine.background.background` over one
flat stream of events (a track opened, a block, a track's end or error); its
queue is bounded, so memory stays a few blocks per worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .audio import AudioStream
from .background import background
from .errors import AudioError
from .ffmpeg import FFmpegStream, open_audio

__all__ = ["decoded_tracks"]

_TRACK, _BLOCK, _END, _ERROR = "track", "block", "end", "error"


class _Track:
    """What the decoder hands over for one track: a stream or an error, then its blocks."""

    def __init__(
        self, item, stream: AudioStream | FFmpegStream | None, error: Exception | None, events: Iterator
    ) -> None:
        self.item = item
        self.stream = stream
        self.error = error
        self._events = events
        self._finished = error is not None

    def blocks(self) -> Iterator:
        """Decoded blocks of this track; raises the decoder's AudioError in order."""
        while not self._finished:
            kind, payload = next(self._events)
            if kind == _BLOCK:
                yield payload
                continue
            self._finished = True
            if kind == _ERROR:
                raise payload
            return


def _events(items, sr, offset, duration, on_item, on_corrupt):
    for position, (item, path) in enumerate(items):
        if on_item is not None:
            on_item(position)
        try:
            stream = open_audio(path, sr, offset=offset, duration=duration, on_corrupt=on_corrupt)
        except AudioError as exc:
            yield _TRACK, (item, None, exc)
            continue
        except Exception as exc:  # one odd file must never stop the run
            yield _TRACK, (item, None, AudioError("internal", path, f"{type(exc).__name__}: {exc}"))
            continue
        yield _TRACK, (item, stream, None)
        try:
            for block in stream.blocks():
                yield _BLOCK, block
            yield _END, None
        except AudioError as exc:
            yield _ERROR, exc
        except Exception as exc:
            yield _ERROR, AudioError("internal", path, f"{type(exc).__name__}: {exc}")
        finally:
            stream.close()


def decoded_tracks(
    items: Iterable, sr: int, *, offset=None, duration=None, depth: int = 4, on_item=None, on_corrupt: str = "skip"
) -> Iterator[_Track]:
    """Open and decode ``(item, path)`` pairs ahead of the consumer.

    ``depth`` bounds how many events the decoder thread runs ahead; ``depth=0``
    decodes in the calling thread, one track at a time. ``on_item(position)`` is
    called (in the decoding thread) before the item at ``position`` is opened.
    ``on_corrupt`` is passed to :func:`~mgc.engine.ffmpeg.open_audio`.

    Yields
    ------
    _Track
        ``.item`` as given, ``.stream`` (None on error), ``.error`` (an AudioError
        raised on open) and ``.blocks()`` (mono float32 blocks at ``sr``). The
        consumer may stop reading a track's blocks at any point: what is left of
        them is skipped when it asks for the next track. An error while skipping
        is dropped, since the consumer already gave up on that track.
    """
    events = background(_events(list(items), sr, offset, duration, on_item, on_corrupt), depth, name="mgc-decode")
    try:
        for kind, payload in events:
            if kind != _TRACK:
                raise RuntimeError("decoded_tracks: the previous track's blocks were not consumed")
            track = _Track(*payload, events)
            yield track
            try:
                for _ in track.blocks():
                    pass  # the consumer gave up on this track (e.g. bad samples): skip its other blocks
            except AudioError:
                pass
    finally:
        events.close()
