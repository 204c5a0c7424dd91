"""mgc's models: networks, training, model kinds and the tasks users run on them.

Reads stores and computes features only through ``engine``'s public API. The
package is organised by concern, with imports one way (tests/test_import_graph.py):

- ``errors``, ``config``: :class:`ModelError`; the configs, choices and defaults (no JAX);
- ``devices``: which devices JAX uses and the choices ``auto`` makes on them (``mgc devices``);
- ``folder``: the model folder's schema, every kind's files; ``checkpoints``: a CNN's orbax checkpoints;
- ``nets/``: networks and the jitted steps, pure; ``pretrained/``: musicnn's weights, licence and converter;
- ``data/``: splits, crops and the training stream, store sources, audio inputs for a spec;
- ``inference``: crops of many tracks packed in batches; ``metrics``: classification metrics;
- ``kinds/``: the one model interface, its kinds (CNN, built-in tagger, head) and :func:`load_model`;
- ``training/``: the CNN on one or many devices, heads and their vector cache, fine-tuning;
- ``tasks/``: predict, evaluate, embed, similar, report, the demo.

The public names below load on first use: ``mgc.models.config`` (the CLI's
defaults, ``ModelError``) imports in milliseconds, so a command that never
touches a network, such as ``mgc inspect``, does not pay about a second for JAX.
Looking up a name that runs networks first turns on JAX's persistent compilation
cache (:func:`mgc.models.compile_cache.enable`), before anything compiles.
"""

from importlib import import_module

from . import compile_cache

#: Public name -> the module that defines it.
_HOMES = {
    "BACKBONES": "config",
    "BUILTIN_MODELS": "config",
    "DEFAULT_BACKBONE": "config",
    "EMBED_INDEXES": "config",
    "EVAL_SPLITS": "config",
    "FEATURIZERS": "config",
    "HEADS": "config",
    "INFER_BATCH": "config",
    "HeadConfig": "config",
    "ModelConfig": "config",
    "TrainConfig": "config",
    "tiny_model_config": "config",
    "ModelError": "errors",
    "Model": "kinds.base",
    "load_model": "kinds.loader",
    "train": "training.cnn",
    "train_head": "training.heads",
    "predict": "tasks.predict",
    "predict_to_file": "tasks.predict",
    "evaluate": "tasks.evaluate",
    "EmbeddingStore": "tasks.embed",
    "embed": "tasks.embed",
    "similar": "tasks.similar",
    "report": "tasks.report",
    "DemoConfig": "tasks.demo",
    "run_demo": "tasks.demo",
}

__all__ = sorted(_HOMES)

#: Homes whose names compile nothing on their own: looking them up leaves JAX alone (``report`` without a
#: model imports no JAX; with one, its model section turns the cache on before it evaluates).
_NO_COMPILING = {"config", "errors", "tasks.report"}


def __getattr__(name):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if home not in _NO_COMPILING:
        compile_cache.enable()
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
