"""JAX's persistent compilation cache in a per-user folder: a command compiles its programs once per machine.

:func:`enable` points JAX at the folder (``jax_compilation_cache_dir``) and caches every program, however
small or quick to compile (on CPU most of mgc's programs take well under JAX's default threshold of one
second, yet dozens of them add up to seconds). The second run of a command reads the compiled programs back
instead of compiling them with XLA.

The folder, first match wins:

1. ``$MGC_CACHE_DIR``;
2. ``$XDG_CACHE_HOME/mgc/jax``;
3. ``~/.cache/mgc/jax``.

``MGC_COMPILE_CACHE=off`` (also ``0``, ``false`` or ``no``, any case) turns the cache off. A JAX cache folder
set by the user (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update``) is left as it is. A folder that
cannot be created or written turns the cache off for the process with one :class:`~mgc.engine.MgcWarning`;
the command runs on, compiling as without a cache.

Several processes may share the folder. JAX writes an entry in place (``LRUCache.put`` is ``write_bytes``,
not atomic): a reader could see half an entry and a killed writer would leave a truncated one that every
later run fails to read (a warning, then a compilation). So :func:`enable` installs a writer that writes
each entry to a temporary file of the folder and renames it into place; a reader sees a whole entry or
none. If JAX's internals differ from those this module knows, JAX's own writer is used.

The cache is trusted code: like JAX, mgc creates the folder readable by its owner only (mode 0700).

mgc's public model functions (``mgc.models.predict``, ``train``, ``evaluate``, ``embed``, ``similar``,
``load_model``, ...) call :func:`enable` when first looked up, before anything compiles; code importing
mgc's submodules directly calls it itself. Importing this module does not import JAX.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import warnings
from pathlib import Path

__all__ = ["OFF_VALUES", "cache_folder", "enable"]

#: Values of ``MGC_COMPILE_CACHE`` that turn the cache off (compared in lower case).
OFF_VALUES = ("off", "0", "false", "no")

_lock = threading.Lock()
_decided = False
_folder: Path | None = None


def cache_folder() -> Path | None:
    """The folder of the compilation cache from the environment, or None when it is turned off.

    Returns
    -------
    Path or None
        ``$MGC_CACHE_DIR``, else ``$XDG_CACHE_HOME/mgc/jax``, else ``~/.cache/mgc/jax``; None when
        ``MGC_COMPILE_CACHE`` is one of :data:`OFF_VALUES`.
    """
    if os.environ.get("MGC_COMPILE_CACHE", "").strip().lower() in OFF_VALUES:
        return None
    if os.environ.get("MGC_CACHE_DIR"):
        return Path(os.environ["MGC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return Path(base) / "mgc" / "jax"


def enable() -> Path | None:
    """Turn on JAX's persistent compilation cache for this process, once; later calls return the same.

    Call it before the process compiles anything (compilations before it are not cached).

    Returns
    -------
    Path or None
        The cache folder in use (the user's own JAX folder when one was set), or None when the cache is off:
        turned off by ``MGC_COMPILE_CACHE`` or an unwritable folder (one warning).
    """
    global _decided, _folder
    with _lock:
        if not _decided:
            _folder = _turn_on(cache_folder())
            _decided = True
        return _folder


def _turn_on(folder: Path | None) -> Path | None:
    """Configure JAX for ``folder`` (None: off); the folder in use, or None."""
    if folder is None:
        return None
    import jax

    own = jax.config.jax_compilation_cache_dir
    if own:  # the user configured JAX's cache: theirs wins
        return Path(own)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # writable, not only present
            pass
    except OSError as error:
        from mgc.engine import MgcWarning

        reason = error.strerror or str(error)
        warnings.warn(
            f"compilation cache off: cannot write to {folder} ({reason}); "
            "set MGC_CACHE_DIR to a writable folder, or MGC_COMPILE_CACHE=off to silence this",
            MgcWarning,
            stacklevel=4,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # every size, and JAX keeps it so
    _install_atomic_writer(folder)
    return folder


def _install_atomic_writer(folder: Path) -> bool:
    """Make JAX write cache entries atomically (temporary file, then rename); False when JAX's writer stays.

    Uses JAX's private ``compilation_cache`` and ``lru_cache`` modules, checked before use: with a size
    limit (``jax_compilation_cache_max_size``, whose writer locks the folder), content checks or a JAX that
    has already set up its cache, JAX's own writer is kept.
    """
    import jax

    try:
        from jax._src import compilation_cache as jax_cache
        from jax._src.lru_cache import _CACHE_SUFFIX, LRUCache
    except ImportError:
        return False
    if jax.config.jax_compilation_cache_max_size != -1 or jax.config.jax_compilation_cache_check_contents:
        return False

    class AtomicFileCache(LRUCache):
        """JAX's file cache whose entries appear whole: written to a temporary file, then renamed."""

        def put(self, key: str, value: bytes) -> None:
            if not key:
                raise ValueError("key cannot be empty")
            final = os.path.join(str(self.path), f"{key}{_CACHE_SUFFIX}")
            if os.path.exists(final):
                return
            handle, temporary = tempfile.mkstemp(dir=str(self.path), prefix=".entry-", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(value)
                os.replace(temporary, final)  # another process's copy of the same entry is equal
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise

    needed = ("_cache", "_cache_initialized", "_cache_initialized_mutex")
    if not all(hasattr(jax_cache, name) for name in needed):
        return False
    with jax_cache._cache_initialized_mutex:
        if jax_cache._cache is not None or jax_cache._cache_initialized:
            return False
        jax_cache._cache = AtomicFileCache(str(folder), max_size=-1)
        jax_cache._cache_initialized = True
    return True
