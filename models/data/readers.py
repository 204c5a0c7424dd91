"""Training batches built by reader processes and handed over in shared memory.

One Python process cannot feed an accelerator: the per-batch work (gathering
crops, normalisation, masks, mixup) runs under the GIL at about 13,000
examples/s a core. :class:`ReaderPool` runs ``K`` reader processes (spawned, one
NumPy thread each), each with its own :class:`~mgc.models.data.pipeline.TrainStream`
over the same store and settings. Reader ``k`` builds the batches of the steps
``s`` with ``s % K == k``: every reader walks the whole plan (which examples, in
which order: index work) and reads the windows it needs, but assembles only its
own steps, straight into one of its ``depth`` slots of shared memory. The
training process takes the batches in step order and copies each out of its slot
(one ``memcpy``; a CPU backend may keep a NumPy array's memory as a device
buffer, so a slot is never lent out), then frees the slot.

Batches are those of ``TrainStream.batches`` exactly: a function of ``(seed,
step)`` whatever the number of readers, so resume is exact as before.

Costs: a reader's start (about a second: imports, opening the store); each
reader reads every shuffle window (in the cached case once, then keeps it), so
reading is repeated ``K`` times while assembling is divided by ``K``. The
assembling dominates from memory or the page cache; a store read from a slow
disk is better served by ``readers`` (threads) and one process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import traceback
from collections.abc import Iterator
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from mgc.models.errors import ModelError

__all__ = ["ReaderPool"]

#: Seconds between checks that the readers are alive while waiting for a batch.
_POLL_SECONDS = 1.0


def _reader(index: int, count: int, spec: dict, names: list[str], free, ready, start: int, end: int) -> None:
    """Reader ``index`` of ``count``: assemble the batches of its steps into its slots."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    slots = [shared_memory.SharedMemory(name=name) for name in names]
    try:
        from mgc.engine import FeatureStore
        from mgc.models.data.pipeline import Normalizer, TrainStream

        store = FeatureStore(spec["store"])
        stream = TrainStream(
            store,
            spec["rows"],
            spec["labels"],
            spec["n_classes"],
            Normalizer.from_dict(spec["normalizer"]),
            spec["crop_frames"],
            spec["config"],
            batch_size=spec["batch_size"],
            ranks=spec["ranks"],
            local_ranks=spec["local_ranks"],
        )
        shape_x, shape_y = spec["shape_x"], spec["shape_y"]
        turn = 0
        for step, parts in stream.pieces(start, end):
            if step % count != index:
                continue
            slot = turn % len(slots)
            free.acquire()
            buffer = slots[slot].buf
            x = np.ndarray(shape_x, np.float32, buffer)
            y = np.ndarray(shape_y, np.float32, buffer, offset=x.nbytes)
            stream.assemble(step, parts, out={"x": x, "y": y})
            ready.put((step, slot))
            turn += 1
        ready.put((None, None))
    except BaseException:  # the training process raises it, with this traceback
        ready.put(("error", traceback.format_exc()))
    finally:
        for memory in slots:
            memory.close()


class ReaderPool:
    """``stream``'s batches, assembled by ``readers`` processes (see the module's description).

    Parameters
    ----------
    stream : TrainStream
        The stream whose batches to build (its store must have a ``path``).
    readers : int
        Reader processes.
    depth : int
        Batches each reader may have ready ahead (its slots of shared memory).
    """

    def __init__(self, stream: Any, readers: int, depth: int = 2) -> None:
        if readers < 1:
            raise ModelError(f"reader processes must be at least 1, got {readers}")
        path = getattr(stream.store, "path", None)
        if path is None:
            raise ModelError("reader processes need a store opened from a folder (they open it again)")
        self.stream, self.readers, self.depth = stream, readers, max(1, depth)
        n = stream.rank_batch * len(stream.local_ranks)
        self.shape_x = (n, stream.crop_frames, stream.n_mels)
        self.shape_y = (n, stream.n_classes)
        self.spec = {
            "store": str(path),
            "rows": stream.rows,
            "labels": stream.labels,
            "n_classes": stream.n_classes,
            "normalizer": stream.normalizer.to_dict(),
            "crop_frames": stream.crop_frames,
            "config": stream.config,
            "batch_size": stream.batch_size,
            "ranks": stream.ranks,
            "local_ranks": stream.local_ranks,
            "shape_x": self.shape_x,
            "shape_y": self.shape_y,
        }

    def batches(self, start_step: int = 0, end_step: int | None = None) -> Iterator[tuple[int, dict]]:
        """``(step, batch)`` for ``start_step <= step < end_step``, as ``TrainStream.batches`` gives them."""
        if end_step is None:
            raise ModelError("reader processes need the last step (end_step)")
        context = mp.get_context("spawn")
        nbytes = int(np.prod(self.shape_x) + np.prod(self.shape_y)) * 4
        memories = [
            [shared_memory.SharedMemory(create=True, size=max(nbytes, 1)) for _ in range(self.depth)]
            for _ in range(self.readers)
        ]
        frees = [context.Semaphore(self.depth) for _ in range(self.readers)]
        readies = [context.Queue() for _ in range(self.readers)]
        processes = [
            context.Process(
                target=_reader,
                args=(
                    k,
                    self.readers,
                    self.spec,
                    [m.name for m in memories[k]],
                    frees[k],
                    readies[k],
                    start_step,
                    end_step,
                ),  # fmt: skip
                name=f"mgc-reader-{k}",
                daemon=True,
            )
            for k in range(self.readers)
        ]
        try:
            for process in processes:
                process.start()
            for step in range(start_step, end_step):
                k = step % self.readers
                got, slot = self._next(readies[k], processes[k])
                if got == "error":
                    raise ModelError(f"a reader process failed:\n{slot}")
                if got != step:
                    raise ModelError(f"reader {k} gave step {got} where step {step} was due")
                buffer = memories[k][slot].buf
                x = np.array(np.ndarray(self.shape_x, np.float32, buffer))
                y = np.array(np.ndarray(self.shape_y, np.float32, buffer, offset=x.nbytes))
                frees[k].release()
                yield step, {"x": x, "y": y}
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=10)
            for ready in readies:
                ready.close()
                ready.cancel_join_thread()
            for memory in (m for ring in memories for m in ring):
                memory.close()
                memory.unlink()

    @staticmethod
    def _next(ready, process) -> tuple:
        while True:
            try:
                return ready.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not process.is_alive():
                    raise ModelError(
                        f"reader process {process.name} died (exit code {process.exitcode}) before its batch was ready"
                    ) from None
