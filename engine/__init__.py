"""mgc's feature engine: corpora, decoding, feature specs, sharded HDF5 stores, parallel runs.

The engine imports ``kernels`` for the numbers and never imports JAX (``engine.bench``'s
librosax peer aside, in a measuring process of its own).
"""

from . import atomic, neighbours, vectors
from .audio import ON_CORRUPT
from .background import background
from .batch import map_features
from .corpus import FFMPEG_EXTENSIONS, SPLIT_NAMES, Corpus, Track, find_audio_files, folder_tracks, load_corpus
from .diff import describe_differences, differences
from .errors import (
    AudioError,
    CorpusError,
    EngineError,
    MgcError,
    MgcWarning,
    SpecError,
    SpecMismatchError,
    StoreError,
    StoreLockedError,
    check_at_least,
)
from .extract import ExtractFailed, ExtractResult, check_settings, extract
from .features import compute_features
from .ffmpeg import FFmpegStream, open_audio
from .lock import FolderLock
from .progress import ProgressCallback, ProgressEvent, ThrottledReporter
from .progress import Reporter as ProgressReporter
from .spec import SPEC_PRESETS, FeatureSpec
from .store import FeatureStore, TrackTable
from .summary import summarize_store
from .vectors import VectorStore, VectorWriter
from .workers import default_workers, prestart_pool, prestarted

__all__ = [
    "ON_CORRUPT",
    "ThrottledReporter",
    "check_settings",
    "MgcWarning",
    "check_at_least",
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
    "prestart_pool",
    "prestarted",
    "describe_differences",
    "differences",
    "extract",
    "find_audio_files",
    "load_corpus",
    "folder_tracks",
    "SPLIT_NAMES",
    "FFMPEG_EXTENSIONS",
    "FFmpegStream",
    "open_audio",
    "map_features",
    "MgcError",
    "summarize_store",
]
