"""mgc's feature engine: corpora, decoding, feature specs, sharded HDF5 stores, parallel runs.

The engine imports ``kernels`` for the numbers and never imports JAX.
"""

from .corpus import Corpus, Track, load_corpus
from .errors import (
    AudioError,
    CorpusError,
    EngineError,
    MgcError,
    SpecError,
    SpecMismatchError,
    StoreError,
    StoreLockedError,
)
from .extract import ExtractFailed, ExtractProgress, ExtractResult, extract
from .features import compute_features
from .spec import FeatureSpec
from .store import FeatureStore, TrackTable
from .summary import summarize_store

__all__ = [
    "AudioError",
    "Corpus",
    "CorpusError",
    "EngineError",
    "MgcError",
    "ExtractFailed",
    "ExtractProgress",
    "ExtractResult",
    "FeatureSpec",
    "FeatureStore",
    "SpecError",
    "SpecMismatchError",
    "StoreError",
    "StoreLockedError",
    "SYNTH_GENRES",
    "SynthError",
    "Track",
    "TrackTable",
    "compute_features",
    "extract",
    "load_corpus",
    "make_corpus",
    "summarize_store",
]


def __getattr__(name):
    # The generator (and the scipy.signal it needs) loads on first use, so
    # extraction workers do not pay for importing it.
    if name in ("make_corpus", "SynthError", "SYNTH_GENRES"):
        from . import synth

        return {"make_corpus": synth.make_corpus, "SynthError": synth.SynthError, "SYNTH_GENRES": synth.GENRES}[name]
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
