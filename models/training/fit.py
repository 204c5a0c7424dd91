"""Fitting a head's layers on standardised vectors: L-BFGS for the linear head, Adam for the MLP.

The objective is scikit-learn's ``LogisticRegression`` (multinomial, ``C``):
``C * sum of log-losses + 0.5 * |W|^2`` (biases not penalised), so the linear
head reaches the same optimum; the MLP minimises the same objective over both
layers' weights.
"""

from __future__ import annotations

import numpy as np

from mgc.models.nets.heads import head_logits, head_penalty

__all__ = ["fit_linear", "fit_mlp"]


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    c: float,
    hidden: int,
    *,
    seed: int = 0,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    lr: float = 1e-3,
) -> tuple[dict[str, np.ndarray], int]:
    """A one-hidden-layer MLP: minimise ``(C * sum log-loss + 0.5 * |W|^2) / (C * n)`` with Adam on minibatches.

    Minibatches of ``min(512, n)`` vectors drawn with replacement; ``clip(100
    passes, 500, 4000)`` steps under a cosine-decayed learning rate, so a large
    set gets about 2 million examples whatever its size. With ``valid`` vectors,
    the parameters of the lowest validation loss (checked 20 times) are kept.

    Returns
    -------
    params : dict
        ``hidden_weights`` ``(dim, hidden)``, ``hidden_bias``, ``weights`` ``(hidden, n_classes)``, ``bias``.
    steps : int
    """
    import jax
    import jax.numpy as jnp
    import optax

    n, dim = x.shape
    batch = min(512, n)
    steps = int(np.clip(100 * -(-n // batch), 500, 4000))
    chunk = max(steps // 20, 1)
    steps = chunk * -(-steps // chunk)
    k1, k2, key = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = {
        "hidden_weights": jax.random.normal(k1, (dim, hidden)) * np.sqrt(2.0 / dim),
        "hidden_bias": jnp.zeros(hidden),
        "weights": jax.random.normal(k2, (hidden, n_classes)) * np.sqrt(1.0 / hidden),
        "bias": jnp.zeros(n_classes),
    }
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))
    opt_state = tx.init(params)
    x, y = jnp.asarray(x, jnp.float32), jax.nn.one_hot(jnp.asarray(y), n_classes)
    scale = 1.0 / (c * n)

    def loss(params, xb, yb):
        return optax.softmax_cross_entropy(head_logits(params, xb), yb).mean() + scale * head_penalty(params)

    @jax.jit
    def run(params, opt_state, key, x, y):  # `chunk` steps; the data are arguments (see fit_linear)
        def body(i, carry):
            params, opt_state = carry
            take = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0, n)
            grads = jax.grad(loss)(params, x[take], y[take])
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        return jax.lax.fori_loop(0, chunk, body, (params, opt_state))

    if valid is not None and len(valid[0]):
        vx, vy = jnp.asarray(valid[0], jnp.float32), jax.nn.one_hot(jnp.asarray(valid[1]), n_classes)
        valid_loss = jax.jit(lambda p, vx, vy: optax.softmax_cross_entropy(head_logits(p, vx), vy).mean())
    else:
        valid_loss = None
    best, best_loss = params, np.inf
    for done in range(0, steps, chunk):
        params, opt_state = run(params, opt_state, jax.random.fold_in(key, done), x, y)
        if valid_loss is not None:
            value = float(valid_loss(params, vx, vy))
            if value < best_loss:
                best, best_loss = params, value
    params = best if valid_loss is not None else params
    return {k: np.asarray(v, np.float32) for k, v in params.items()}, steps


def fit_linear(
    x: np.ndarray, y: np.ndarray, n_classes: int, c: float, max_iter: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Multinomial logistic regression: minimise ``C * sum log-loss + 0.5 * |W|^2`` (bias not penalised)."""
    import jax
    import jax.numpy as jnp
    import optax

    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y)
    n = len(x)

    def objective(params, x, y):
        logits = x @ params["w"] + params["b"][None, :]
        # One-hot rather than integer labels: the gradient of a gather is a scatter that XLA constant-folds slowly.
        nll = -(jax.nn.log_softmax(logits, axis=-1) * jax.nn.one_hot(y, n_classes)).sum()
        return (c * nll + 0.5 * jnp.sum(params["w"] ** 2)) / n  # scaled by 1/n: same optimum

    params = {"w": jnp.zeros((x.shape[1], n_classes)), "b": jnp.zeros(n_classes)}
    solver = optax.lbfgs()
    state = solver.init(params)

    # The data are arguments, not constants closed over: XLA would otherwise fold a copy of them into the program.
    @jax.jit
    def step(params, state, x, y):
        def loss(p):
            return objective(p, x, y)

        value, grad = optax.value_and_grad_from_state(loss)(params, state=state)
        updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(params, updates), state, optax.tree.norm(grad)

    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007
        params, state, norm = step(params, state, x, y)
        if float(norm) < 1e-6:
            break
    return np.asarray(params["w"]), np.asarray(params["b"]), iterations
