"""Training across processes and hosts on JAX's multi-controller runtime (``jax.distributed``).

One process per host (or several per host, as the tests run them) starts with the same
command; :func:`join` makes them one run before JAX's runtime starts:

1. **Rendezvous.** Process 0 listens on ``--coordinator HOST:PORT``; every other process
   connects (retrying until ``timeout`` s) and says who it is: its process id, the process
   count it was given and a digest of its settings (store, model folder, training options).
   Process 0 answers all of them at once: go, or one error line (a process that did not
   join in time, a mismatched ``--num-processes``, a repeated ``--process-id``, other
   settings), so that every process stops with the same clear error instead of JAX's
   runtime aborting with a C++ stack trace (which is what a missing process or a timeout
   does inside ``jax.distributed.initialize``) or, worse, a process told ``--num-processes
   3`` silently joining a run of 2.
2. ``jax.distributed.initialize`` on the same address (process 0 hosts JAX's coordination
   service there once the rendezvous socket is closed). On CPU the collectives are gloo
   over TCP (JAX's default); on GPU NCCL, on TPU ICI.

``--distributed auto`` skips the rendezvous and lets JAX detect the cluster (SLURM, Open
MPI, Cloud TPU); the settings are then compared after the runtime started
(:func:`agree_settings`).

During the run, :func:`agree` turns an error on any process into the same error on all
of them (a process that fails alone would leave the others waiting in a collective), and
a collective that fails because a peer died (gloo: "Connection closed by peer") becomes
:class:`PeerLost`, which the CLI reports in one line and exits without JAX's shutdown
barrier (that barrier would wait for the dead process and then abort).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from typing import Any

import numpy as np

from mgc.models.errors import ModelError

__all__ = [
    "PeerLost",
    "agree",
    "agree_settings",
    "exit_now",
    "gather_shares",
    "is_peer_loss",
    "join",
    "leave",
    "parse_coordinator",
    "settings_digest",
    "shutdown",
    "together",
]

#: Seconds without a heartbeat after which JAX's coordination service declares a process dead.
HEARTBEAT_SECONDS = 30
#: Bytes of an error message exchanged by :func:`agree`.
_MESSAGE_BYTES = 1024


class PeerLost(ModelError):
    """A collective failed because another process of the run stopped (killed, crashed, or unreachable)."""


def parse_coordinator(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[::1]:PORT`` for IPv6).

    Raises
    ------
    ModelError
        When ``address`` is not of that form or the port is not 1 to 65535.
    """
    host, sep, port = str(address).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ModelError(f"--coordinator must be HOST:PORT (e.g. 10.0.0.1:8476), got {address!r}")
    return host, int(port)


def settings_digest(*parts: Any) -> str:
    """A short digest of JSON-able ``parts`` (bytes are hashed as they are): equal settings, equal digests."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _send(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def _receive(connection: socket.socket, deadline: float) -> dict | None:
    """One JSON line, or None when the peer closed or the deadline passed."""
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        connection.settimeout(left)
        try:
            chunk = connection.recv(4096)
        except (TimeoutError, OSError):
            return None
        if not chunk:
            return None
        data += chunk
        if len(data) > 65536:
            return None
    try:
        message = json.loads(data)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _host_rendezvous(port: int, num_processes: int, digest: str, timeout: float) -> dict[int, socket.socket]:
    """Process 0: wait for processes 1 .. N-1, check what they say, answer them all; their connections."""
    try:
        listener = socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True, reuse_port=False)
    except OSError as exc:
        raise ModelError(
            f"process 0 cannot listen on the coordinator's port {port} ({exc.strerror or exc}): "
            "give every process a free port in --coordinator"
        ) from None
    joined: dict[int, socket.socket] = {}
    problem = None
    deadline = time.monotonic() + timeout
    try:
        while len(joined) < num_processes - 1 and problem is None:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(range(1, num_processes)) - set(joined))
                problem = (
                    f"process{'es' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of {num_processes} "
                    f"did not join the coordinator within {timeout:g} s; start the same command on every process "
                    "(see --join-timeout)"
                )
                break
            listener.settimeout(left)
            try:
                connection, _address = listener.accept()
            except (TimeoutError, OSError):
                continue
            hello = _receive(connection, time.monotonic() + 10.0)
            if hello is None:
                connection.close()
                continue
            pid, count = hello.get("process_id"), hello.get("num_processes")
            if count != num_processes:
                problem = f"process {pid} was started with --num-processes {count}, process 0 with {num_processes}"
            elif not isinstance(pid, int) or not 0 < pid < num_processes:
                problem = (
                    f"a process gave --process-id {pid}: with --num-processes {num_processes} it must be "
                    f"1 to {num_processes - 1} (0 is the coordinator)"
                )
            elif pid in joined:
                problem = f"two processes were started with --process-id {pid}"
            elif hello.get("digest") != digest:
                problem = (
                    f"process {pid} was started with other settings than process 0 (the store, --out or a training "
                    "option differ): every process must run the same command, only --process-id differs"
                )
            if problem is not None:
                _send(connection, {"error": problem})
                connection.close()
                break
            joined[pid] = connection
        answer = {"error": problem} if problem else {"go": True}
        for connection in joined.values():
            try:
                _send(connection, answer)
            except OSError:
                pass
        if problem is not None:
            for connection in joined.values():
                connection.close()
            raise ModelError(problem)
    finally:
        listener.close()  # JAX's service listens on the port next; the connections stay, for the watch
    return joined


def _join_rendezvous(
    host: str, port: int, process_id: int, num_processes: int, digest: str, timeout: float
) -> socket.socket:
    """Process I > 0: reach process 0 (retrying until ``timeout``), say who it is, wait for its answer."""
    deadline = time.monotonic() + timeout
    hello = {"process_id": process_id, "num_processes": num_processes, "digest": digest}
    while True:
        try:
            connection = socket.create_connection((host, port), timeout=5.0)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ModelError(
                    f"cannot reach the coordinator {host}:{port} within {timeout:g} s ({exc.strerror or exc}): "
                    "is process 0 running with the same --coordinator?"
                ) from None
            time.sleep(0.2)
    _send(connection, hello)
    answer = _receive(connection, deadline + 15.0)  # process 0 waits up to its own timeout, then answers
    if answer is None or "error" in answer:
        connection.close()
    if answer is None:
        raise ModelError(f"the coordinator {host}:{port} did not answer within {timeout:g} s")
    if "error" in answer:
        raise ModelError(str(answer["error"]))
    return connection


def join(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    *,
    digest: str,
    timeout: float = 300.0,
    auto: bool = False,
) -> None:
    """Make this process one of a multi-process run and start JAX's distributed runtime.

    Parameters
    ----------
    coordinator : str
        ``HOST:PORT`` of process 0, the same on every process.
    num_processes, process_id : int
        How many processes take part, and which one this is (0 to ``num_processes - 1``).
    digest : str
        :func:`settings_digest` of what must be equal on every process.
    timeout : float
        Seconds to wait for every process to join.
    auto : bool
        Let JAX detect the cluster (SLURM, Open MPI, Cloud TPU) instead; the other
        arguments must be None.

    Raises
    ------
    ModelError
        A process did not join in time, the processes disagree (count, ids,
        settings), or JAX's runtime was already started in this process.
    """
    import jax

    if jax.distributed.is_initialized():
        raise ModelError("jax.distributed is already initialized in this process")
    if auto:
        try:
            jax.distributed.initialize(initialization_timeout=int(timeout), heartbeat_timeout_seconds=HEARTBEAT_SECONDS)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"--distributed auto found no cluster to join: {exc}") from None
        with _stdout_to_stderr():
            agree_settings(digest)
        return
    if coordinator is None or num_processes is None or process_id is None:
        raise ModelError("a multi-process run needs --coordinator, --num-processes and --process-id on every process")
    host, port = parse_coordinator(coordinator)
    if not 0 <= process_id < num_processes:
        raise ModelError(
            f"--process-id must be 0 to {num_processes - 1} with --num-processes {num_processes}, got {process_id}"
        )
    peers = {}
    if num_processes > 1:
        if process_id == 0:
            peers = _host_rendezvous(port, num_processes, digest, timeout)
        else:
            peers = {0: _join_rendezvous(host, port, process_id, num_processes, digest, timeout)}
    jax.distributed.initialize(
        coordinator_address=f"{host}:{port}" if ":" not in host else f"[{host}]:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,  # everyone is there already: this is the runtime's own start
        heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
    )
    with _stdout_to_stderr():
        agree(None)  # the first collective connects gloo, which says so on stdout
    if peers:
        _Watch(peers, hub=process_id == 0).start()


#: The step the training loop is at (for the message of a lost process).
current_step: int | None = None
_exit_lock = threading.Lock()
_exiting = False
_watch: _Watch | None = None
#: Seconds a process whose peer stopped with an error waits for its own error (the same one, agreed) first.
_GRACE_SECONDS = 3.0


class _Watch(threading.Thread):
    """Watches the rendezvous connections for the whole run: a process that vanishes is noticed at once.

    The connections stay open after the rendezvous (process 0 holds one to every process, each
    process one to process 0). A process leaving in order says ``bye`` with its exit code
    (:func:`leave`); a connection that closes without it means the process was killed or crashed.
    Then this process prints one error line and exits at once, so that nobody waits in a
    collective or for JAX's heartbeat (whose expiry aborts the process with a C++ stack trace).
    Process 0 tells the others why before it goes.
    """

    def __init__(self, peers: dict[int, socket.socket], hub: bool) -> None:
        super().__init__(name="mgc-watch", daemon=True)
        self.peers, self.hub = peers, hub
        self.left: set[int] = set()

    def run(self) -> None:
        import selectors

        global _watch
        _watch = self
        selector = selectors.DefaultSelector()
        buffers = {}
        for pid, connection in self.peers.items():
            connection.setblocking(False)
            selector.register(connection, selectors.EVENT_READ, pid)
            buffers[pid] = b""
        while len(self.left) < len(self.peers):
            for key, _events in selector.select():
                pid = key.data
                try:
                    chunk = key.fileobj.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    selector.unregister(key.fileobj)
                    if pid not in self.left:
                        self.left.add(pid)
                        self.lost(f"process {pid} of the run stopped (killed or crashed)")
                    continue
                buffers[pid] += chunk
                while b"\n" in buffers[pid]:
                    line, buffers[pid] = buffers[pid].split(b"\n", 1)
                    try:
                        message = json.loads(line)
                    except ValueError:
                        continue
                    self.left.add(pid)
                    if message.get("bye"):
                        why = message.get("why") or f"process {pid} of the run stopped with an error (see its output)"
                        self.lost(why, grace=True)

    def lost(self, why: str, grace: bool = False) -> None:
        """A peer is gone: unless this process is leaving anyway, say so once and end it."""
        if grace:
            time.sleep(_GRACE_SECONDS)
        global _exiting
        with _exit_lock:
            if _exiting:
                return
            _exiting = True
        at = f" at step {current_step}" if current_step is not None else ""
        message = (
            f"{why}{at}; the others stop too. What the latest checkpoint holds is kept: run the same command "
            "with --resume on every process to continue"
        )
        if self.hub:
            for connection in self.peers.values():
                try:
                    connection.setblocking(True)
                    _send(connection, {"bye": 1, "why": why})
                except OSError:
                    pass
        import sys

        print(f"error: {message}", file=sys.stderr, flush=True)
        exit_now(1)


def leave(code: int) -> None:
    """Say goodbye to the watched peers with this process's exit ``code`` (its program ends in order)."""
    global _exiting
    with _exit_lock:
        _exiting = True
    if _watch is None:
        return
    for connection in _watch.peers.values():
        try:
            connection.setblocking(True)
            _send(connection, {"bye": code})
        except OSError:
            pass


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what native code writes to file descriptor 1 to 2 meanwhile (stdout stays the results' own)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def together():
    """Run the block on every process; a ModelError in it on any process is raised on all of them after it.

    A process that fails alone would leave the others waiting in the next collective. With one
    process the error is raised as it is.

    The block must run no collective (no JAX computation over other processes' devices, no orbax
    save or barrier): a process that fails in it skips the rest of the block and goes straight to
    this agreement, which would then meet another process's collective (gloo aborts both on the
    mismatch). Process-local reads, checks and computations are what belongs in it.
    """
    import jax

    error = None
    try:
        yield
    except ModelError as exc:
        if jax.process_count() == 1:
            raise
        error = str(exc)
    agree(error)


def agree(error: str | None) -> None:
    """Every process learns whether any process failed (a collective: all must call it at the same point).

    Raises
    ------
    ModelError
        With the first failing process's message (this process's own message when it failed).
    """
    import jax

    if jax.process_count() == 1:
        if error:
            raise ModelError(error)
        return
    from jax.experimental import multihost_utils

    mine = np.zeros(_MESSAGE_BYTES, np.uint8)
    if error:
        encoded = error.encode("utf-8", "replace")[:_MESSAGE_BYTES]
        mine[: len(encoded)] = np.frombuffer(encoded, np.uint8)
    everyone = np.asarray(multihost_utils.process_allgather(mine)).reshape(jax.process_count(), _MESSAGE_BYTES)
    if error:
        raise ModelError(error)
    for process, row in enumerate(everyone):
        if row.any():
            message = bytes(row[row != 0]).decode("utf-8", "replace")
            raise ModelError(f"process {process} stopped the run: {message}")


def gather_shares(values: np.ndarray, total: int) -> np.ndarray:
    """Every process's ``values`` (its share of ``np.array_split(range(total), process_count)``), in order."""
    import jax

    if jax.process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    sizes = [len(part) for part in np.array_split(np.arange(total), jax.process_count())]
    padded = np.zeros(max(sizes), values.dtype)
    padded[: len(values)] = values
    everyone = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), max(sizes))
    return np.concatenate([row[:size] for row, size in zip(everyone, sizes)])


def agree_settings(digest: str) -> None:
    """Refuse a run whose processes were started with other settings (after the runtime started)."""
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return
    mine = np.frombuffer(digest.encode("ascii").ljust(32, b" ")[:32], np.uint8)
    everyone = np.asarray(multihost_utils.process_allgather(mine)).reshape(jax.process_count(), 32)
    different = [p for p, row in enumerate(everyone) if not np.array_equal(row, everyone[0])]
    if different:
        raise ModelError(
            f"process{'es' if len(different) > 1 else ''} {', '.join(map(str, different))} were started with other "
            "settings than process 0 (the store, --out or a training option differ): every process must run the "
            "same command"
        )


def is_peer_loss(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because another process went away."""
    text = str(error)
    return any(
        words in text
        for words in ("Connection closed by peer", "Connection reset by peer", "Gloo", "heartbeat", "UNAVAILABLE")
    )


def shutdown() -> None:
    """Leave a run that ended well: JAX's shutdown barrier, with every process.

    After an error or a lost peer, do not: end the process with :func:`exit_now`, since JAX's own
    exit handler would run the same barrier and wait for (then abort on) a process that is gone.
    """
    import jax

    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def exit_now(code: int) -> None:
    """End the process at once (streams flushed), skipping JAX's exit-time shutdown barrier."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
