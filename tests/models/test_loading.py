"""Loading a model builds its structure abstractly and fills it from the file: nothing initialised, nothing compiled.

Every load path (a CNN's orbax checkpoint, the built-in musicnn, a head's fine-tuned backbone) is
counted in XLA compilations, which random initialisation (``truncated_normal`` and the like, one
small program each) would show. JAX's in-memory caches are cleared first, and the event counted
wraps the persistent compilation cache's look-up too, so a program an earlier test compiled counts
all the same. The loaded weights and outputs are compared, bit for bit, with those of a model built
the old way: random initialisation, then the file's values written over it.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import jax
import numpy as np
import pytest

#: The event jax records for each program it compiles or takes from its persistent cache
#: (``jax._src.dispatch.BACKEND_COMPILE_EVENT``, around ``compiler.compile_or_get_cached``).
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def counted_compilations():
    """A list that holds one entry per XLA compilation made inside the block (caches cleared first)."""
    from jax import monitoring

    compiled: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE:
            compiled.append(event)

    jax.clear_caches()
    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiled
    finally:
        monitoring.unregister_event_duration_listener(listener)


def assert_same_trees(ours, theirs) -> None:
    """Same structure, and leaves of the same type, dtype, shape and bytes."""
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_the_abstract_state_is_the_initial_states_shapes(model_config):
    from mgc.models.config import TrainConfig
    from mgc.models.nets.steps import abstract_state, init_state, make_optimizer

    tx = make_optimizer(TrainConfig(), 10)
    with counted_compilations() as compiled:
        abstract = abstract_state(model_config, tx)
    assert compiled == []
    state = init_state(model_config, tx, seed=0)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(abstract), jax.tree.leaves(state)):
        assert isinstance(a, jax.ShapeDtypeStruct) and (a.shape, a.dtype) == (b.shape, b.dtype)


def test_a_cnn_loads_without_compiling_and_equals_the_old_way(tone_model, tone_store):
    from mgc.engine import FeatureStore
    from mgc.models import load_model
    from mgc.models.checkpoints import Checkpoints
    from mgc.models.config import ModelConfig, TrainConfig
    from mgc.models.kinds.cnn import CnnModel
    from mgc.models.nets.steps import init_state, make_optimizer

    folder = tone_model.folder
    with counted_compilations() as compiled:
        model = load_model(folder, "latest")
    assert compiled == [], f"loading a CNN compiled {len(compiled)} XLA programs"
    assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves((model.params, model.batch_stats)))

    # The old way: a randomly initialised state as the restore template.
    checkpoints = Checkpoints(folder)
    meta = checkpoints.meta("latest")
    tx = make_optimizer(TrainConfig.from_dict(meta["train_config"]), int(meta["total_steps"]))
    with counted_compilations() as compiled:  # the counter sees what random initialisation compiles
        template = jax.tree.map(np.asarray, init_state(ModelConfig.from_dict(meta["model_config"]), tx, seed=0))
    assert compiled
    state, meta = checkpoints.restore("latest", template)
    old = CnnModel(state, meta, source=str(Path(folder).resolve()))

    assert_same_trees((model.params, model.batch_stats), (old.params, old.batch_stats))
    assert model.fingerprint() == old.fingerprint() and model.meta == old.meta
    store = FeatureStore(tone_store)
    rows = np.arange(len(store))
    ours, theirs = list(model.store_results(store, rows)), list(old.store_results(store, rows))
    paths = [(store.tracks.track_id[r], store.tracks.path[r], "") for r in rows[:2]]
    ours += list(model.audio_results(paths, workers=1))
    theirs += list(old.audio_results(paths, workers=1))
    assert len(ours) == len(theirs) == len(rows) + 2
    for a, b in zip(ours, theirs):
        assert a.error is None and b.error is None
        assert np.array_equal(a.probabilities, b.probabilities) and np.array_equal(a.embedding, b.embedding)


def old_musicnn(path: Path):
    """musicnn built the old way: randomly initialised, then the file's values set over it."""
    import jax.numpy as jnp
    from flax import nnx

    from mgc.models.nets.musicnn import Musicnn

    with np.load(path, allow_pickle=False) as weights:
        values = {key: np.asarray(weights[key]) for key in weights.files}
    model = Musicnn(n_classes=values["out/kernel"].shape[1], rngs=nnx.Rngs(0))
    flat = nnx.to_flat_state(nnx.state(model))
    for key, variable in flat:
        variable.set_value(jnp.asarray(values["/".join(map(str, key))], jnp.float32))
    nnx.update(model, nnx.from_flat_state(flat))
    model.eval()
    return model


def assert_holds_the_file(model, path: Path) -> None:
    """The built-in model's network holds exactly the arrays of weights file ``path``."""
    from flax import nnx

    from mgc.models.pretrained.musicnn import musicnn_arrays

    arrays = musicnn_arrays(nnx.merge(model.graphdef, model.params, model.batch_stats))
    with np.load(path, allow_pickle=False) as weights:
        assert set(arrays) == set(weights.files)
        for key in weights.files:
            assert arrays[key].dtype == weights[key].dtype and np.array_equal(arrays[key], weights[key]), key


def outputs(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tag probabilities and embeddings of patches ``x`` through the inference step."""
    from flax import nnx

    from mgc.models.nets.steps import infer_step

    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    step = jax.jit(lambda p, s, x: infer_step(p, s, x, graphdef=graphdef, multilabel=True))
    return tuple(np.asarray(y) for y in step(params, batch_stats, x))


def test_the_built_in_musicnn_loads_without_compiling_and_equals_the_old_way():
    from flax import nnx

    from mgc.models import load_model
    from mgc.models.pretrained.musicnn import weights_path

    with counted_compilations() as compiled:
        model = load_model("musicnn-msd")
        _ = model.params  # the network is built on first use
    assert compiled == [], f"loading musicnn-msd compiled {len(compiled)} XLA programs"
    assert_holds_the_file(model, weights_path("musicnn-msd"))
    assert model.embedding_dim == 200

    old = old_musicnn(weights_path("musicnn-msd"))
    assert nnx.graphdef(old) == model.graphdef
    x = np.random.default_rng(0).standard_normal((2, 187, 96)).astype(np.float32)
    new = nnx.merge(model.graphdef, model.params, model.batch_stats)
    for ours, theirs in zip(outputs(new, x), outputs(old, x)):
        assert np.array_equal(ours, theirs)


def test_a_fine_tuned_heads_backbone_loads_without_compiling(tmp_path):
    """A head folder with its own ``backbone-G.npz``: the head and the backbone's network, from their files."""
    from mgc.models import load_model
    from mgc.models.folder import ModelFolder
    from mgc.models.kinds.builtin import BuiltinModel
    from mgc.models.kinds.head import HeadModel
    from mgc.models.pretrained.musicnn import MUSICNN_SPEC, weights_path

    with np.load(weights_path("musicnn-msd"), allow_pickle=False) as weights:
        tuned = {key: weights[key] for key in weights.files}
    tuned["dense/kernel"] = tuned["dense/kernel"] * np.float32(1.01)  # a backbone unlike the shipped one
    buffer = io.BytesIO()
    np.savez(buffer, **tuned)
    rng = np.random.default_rng(1)
    arrays = {
        "mean": rng.standard_normal(200).astype(np.float32),
        "std": np.ones(200, np.float32),
        "weights": rng.standard_normal((200, 2)).astype(np.float32),
        "bias": np.zeros(2, np.float32),
    }
    meta = {
        "kind": "head", "featurizer": "musicnn-msd", "label_names": ["a", "b"], "spec": dict(MUSICNN_SPEC),
        "fine_tuned": True,
    }  # fmt: skip
    ModelFolder(tmp_path / "m").write_head(arrays, meta, splits={}, backbone=buffer.getvalue())

    with counted_compilations() as compiled:
        head = load_model(tmp_path / "m")
        backbone = BuiltinModel(head.featurizer, path=head.backbone)
        _ = backbone.params  # what the head's vectors pass through
    assert compiled == [], f"loading a fine-tuned head compiled {len(compiled)} XLA programs"
    assert isinstance(head, HeadModel) and head.backbone == tmp_path / "m" / "backbone-1.npz"
    assert_holds_the_file(backbone, head.backbone)
    for key, array in arrays.items():
        assert np.array_equal(getattr(head, key), array)


@pytest.mark.parametrize("name", ["musicnn-msd", "musicnn-mtt"])
def test_load_musicnn_refuses_a_file_of_other_variables(name, tmp_path):
    from mgc.models.pretrained.musicnn import load_musicnn, weights_path

    with np.load(weights_path(name), allow_pickle=False) as weights:
        values = {key: weights[key] for key in weights.files}
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in values.items() if k != "mid_1/bias"})
    with pytest.raises(ValueError, match="does not hold musicnn's variables"):
        load_musicnn(name, tmp_path / "missing.npz")
    np.savez(tmp_path / "shape.npz", **{**values, "dense/bias": values["dense/bias"][:-1]})
    with pytest.raises(ValueError, match="dense/bias has shape"):
        load_musicnn(name, tmp_path / "shape.npz")
    np.savez(tmp_path / "no-out.npz", **{k: v for k, v in values.items() if k != "out/kernel"})
    with pytest.raises(ValueError, match="does not hold musicnn's variables"):
        load_musicnn(name, tmp_path / "no-out.npz")
