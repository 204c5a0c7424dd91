"""The one wording of "these settings differ from the saved ones"."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["describe_differences", "differences"]


def _plain(value: Any) -> Any:
    # JSON turns tuples into lists: compare values in their saved form.
    return json.loads(json.dumps(value))


def differences(saved: Mapping[str, Any], given: Mapping[str, Any], *, keys=None) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, given value)}`` for every key whose values differ.

    ``keys`` limits the comparison (default: every key of either mapping);
    a key missing on one side counts as ``None`` there.
    """
    names = sorted(set(saved) | set(given)) if keys is None else list(keys)
    out = {}
    for key in names:
        a, b = saved.get(key), given.get(key)
        if _plain(a) != _plain(b):
            out[key] = (a, b)
    return out


def describe_differences(changed: Mapping[str, tuple[Any, Any]], saved_name: str, given_name: str) -> str:
    """``"key: SAVED_NAME a vs GIVEN_NAME b, ..."`` for the output of :func:`differences`."""
    return ", ".join(f"{key}: {saved_name} {a!r} vs {given_name} {b!r}" for key, (a, b) in changed.items())
