"""Running an extraction on a Dask cluster: a running scheduler, or a LocalCluster.

``extract`` takes any ``concurrent.futures.Executor``; this module turns a
scheduler address into one (a Dask client's ``get_executor()``) and cleans up
afterwards. Shard tasks are idempotent and each writes its own shard file
atomically, so a task that Dask re-runs after a worker died cannot duplicate
or corrupt anything. Dask is an optional dependency: ``pip install mgc[dask]``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import EngineError

__all__ = ["ClusterError", "DaskSession", "dask_executor", "parse_scheduler"]

_LOCAL = re.compile(r"^local(?::(\d+))?$")


class ClusterError(EngineError):
    """The cluster could not be used: Dask is missing, the address is bad, or nobody answered."""


@dataclass
class DaskSession:
    """An open connection to a Dask cluster.

    Attributes
    ----------
    executor : concurrent.futures.Executor
        Submits shard tasks to the cluster's workers.
    client : distributed.Client
    address : str
        The scheduler's address.
    dashboard_link : str or None
        The dashboard's URL when the scheduler serves one.
    n_workers : int
        Workers connected when the session opened.
    local : bool
        True when this session started its own LocalCluster.
    """

    executor: object
    client: object
    address: str
    dashboard_link: str | None
    n_workers: int
    local: bool


def parse_scheduler(scheduler: str) -> tuple[str, int | None]:
    """Split a ``--scheduler`` value into ("local", n_workers) or ("remote", None).

    ``local`` or ``local:N`` start a LocalCluster of N worker processes (all
    cores when N is omitted); anything with ``://`` or ``host:port`` is the
    address of a running scheduler.
    """
    text = scheduler.strip()
    match = _LOCAL.match(text)
    if match:
        n_workers = int(match.group(1)) if match.group(1) else None
        if n_workers is not None and n_workers < 1:
            raise ClusterError(f"--scheduler {scheduler!r}: local:N needs N >= 1 workers")
        return "local", n_workers
    if "://" in text or re.match(r"^[\w.\-\[\]:]+:\d+$", text):
        return "remote", None
    raise ClusterError(
        f"--scheduler {scheduler!r} is neither 'local', 'local:N' nor a scheduler address like tcp://HOST:8786"
    )


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            "running on a Dask cluster needs dask.distributed, which is not installed: "
            "pip install 'mgc[dask]' (or pip install 'dask[distributed]')"
        ) from None
    return distributed


@contextlib.contextmanager
def dask_executor(scheduler: str, *, timeout: float = 10.0) -> Iterator[DaskSession]:
    """Connect to a Dask scheduler (or start a LocalCluster) and yield a session.

    Parameters
    ----------
    scheduler : str
        ``local``, ``local:N`` (N worker processes on this machine, bound to
        127.0.0.1, one thread each) or a scheduler address such as
        ``tcp://10.0.0.5:8786``.
    timeout : float
        Seconds to wait for a remote scheduler to answer.

    Yields
    ------
    DaskSession

    Raises
    ------
    ClusterError
        Dask is not installed, the address is malformed, or the scheduler did
        not answer within ``timeout`` seconds.
    """
    kind, n_workers = parse_scheduler(scheduler)
    distributed = _import_distributed()
    with contextlib.ExitStack() as stack:
        if kind == "local":
            import logging

            from .workers import default_workers

            cluster = distributed.LocalCluster(
                n_workers=n_workers or default_workers(),
                threads_per_worker=1,  # parallelism comes from processes, as in the local pool
                processes=True,
                host="127.0.0.1",
                # A free loopback port: never clash with another cluster's 8787.
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            )
            stack.callback(cluster.close)
            client = distributed.Client(cluster, set_as_default=False)
        else:
            try:
                client = distributed.Client(scheduler, timeout=timeout, set_as_default=False)
            except (OSError, TimeoutError) as error:
                raise ClusterError(
                    f"no Dask scheduler answered at {scheduler} within {timeout:g} s ({type(error).__name__}); "
                    "start one with `dask scheduler` and `dask worker ADDRESS`, or use --scheduler local"
                ) from None
        stack.callback(client.close)
        info = client.scheduler_info()
        yield DaskSession(
            executor=client.get_executor(pure=False),
            client=client,
            address=client.scheduler.address,
            dashboard_link=_dashboard(client) if kind == "remote" or _has_bokeh() else None,
            n_workers=len(info.get("workers", {})),
            local=kind == "local",
        )


def _has_bokeh() -> bool:
    """Dask serves its dashboard only when bokeh is installed."""
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _dashboard(client) -> str | None:
    try:
        return client.dashboard_link if client.scheduler_info().get("services", {}).get("dashboard") else None
    except Exception:  # the link is a convenience; never fail a run over it
        return None
