"""mgc's genre models: a Flax NNX short-chunk CNN trained on feature stores.

Reads stores and computes features only through ``engine``'s public API.

The submodules (and JAX, Flax, orbax and matplotlib with them) load on first
use of a name: ``models.config`` (the CLI's defaults, ``ModelError``) imports in
milliseconds, so a command that never touches a network, such as ``mgc
inspect``, does not pay about a second for JAX.
"""

import sys
import types
from importlib import import_module

__all__ = [
    "BACKBONES",
    "EMBED_INDEXES",
    "EVAL_SPLITS",
    "FEATURIZERS",
    "HEADS",
    "INFER_BATCH",
    "DemoConfig",
    "EmbeddingStore",
    "HeadConfig",
    "ModelConfig",
    "ModelError",
    "TrainConfig",
    "TrainedModel",
    "embed",
    "evaluate",
    "load_model",
    "predict",
    "predict_to_file",
    "report",
    "run_demo",
    "similar",
    "tiny_model_config",
    "train",
    "train_head",
]

#: Public name -> the module that defines it.
_HOMES = {
    "TrainedModel": "checkpoint",
    "load_model": "checkpoint",
    "BACKBONES": "config",
    "EMBED_INDEXES": "config",
    "EVAL_SPLITS": "config",
    "FEATURIZERS": "config",
    "HEADS": "config",
    "INFER_BATCH": "config",
    "HeadConfig": "config",
    "ModelConfig": "config",
    "ModelError": "config",
    "TrainConfig": "config",
    "tiny_model_config": "config",
    "EmbeddingStore": "embeddings",
    "embed": "embeddings",
    "similar": "similarity",
    "evaluate": "evaluate",
    "predict": "predict",
    "predict_to_file": "predict",
    "report": "report",
    "DemoConfig": "demo",
    "run_demo": "demo",
    "train": "train",
    "train_head": "heads",
}


def __getattr__(name):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


class _Models(types.ModuleType):
    """The package module: a submodule named like a public function never hides the function.

    Importing ``models.train`` (or ``models.evaluate``, ``models.predict``) binds
    the submodule as an attribute of the package; ``models.train`` must stay the
    function.
    """

    def __setattr__(self, name, value):
        if name in _HOMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Models


def __dir__():
    return sorted(set(globals()) | set(__all__))
