"""mgc's feature engine: corpora, decoding, feature specs, sharded HDF5 stores, parallel runs.

The engine imports ``kernels`` for the numbers and never imports JAX.
"""

from . import atomic, neighbours, vectors
from .background import background
from .batch import map_features
from .corpus import Corpus, Track, find_audio_files, load_corpus
from .diff import describe_differences, differences
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
from .extract import ExtractFailed, ExtractResult, extract
from .features import compute_features
from .lock import FolderLock
from .progress import ProgressCallback, ProgressEvent
from .progress import Reporter as ProgressReporter
from .spec import SPEC_PRESETS, FeatureSpec
from .store import FeatureStore, TrackTable
from .summary import summarize_store
from .vectors import VectorStore, VectorWriter
from .workers import default_workers

__all__ = [
    "AudioError",
    "Corpus",
    "CorpusError",
    "EngineError",
    "ExtractFailed",
    "ExtractResult",
    "FeatureSpec",
    "FeatureStore",
    "FolderLock",
    "ProgressCallback",
    "ProgressEvent",
    "ProgressReporter",
    "SPEC_PRESETS",
    "SpecError",
    "SpecMismatchError",
    "StoreError",
    "StoreLockedError",
    "Track",
    "TrackTable",
    "VectorStore",
    "VectorWriter",
    "atomic",
    "neighbours",
    "vectors",
    "background",
    "compute_features",
    "default_workers",
    "describe_differences",
    "differences",
    "extract",
    "find_audio_files",
    "load_corpus",
    "map_features",
    "MgcError",
    "summarize_store",
]
