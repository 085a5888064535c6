"""Generate the Keras/tf2onnx, paddle2onnx and jax2onnx GN test models in tests/data/ (run
once, commit).

Needs packages the test suite does not install (too heavy for CI):
    python3 -m venv /tmp/fx
    /tmp/fx/bin/pip install tensorflow-cpu tf2onnx paddlepaddle paddle2onnx
    /tmp/fx/bin/python scripts/make_framework_fixtures.py keras tfa paddle
Keras 2 (the Keras of most deployed TensorFlow models) needs TensorFlow 2.15 in its own venv:
    python3 -m venv /tmp/fx215
    /tmp/fx215/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.17.0 onnx==1.16.2
    /tmp/fx215/bin/python scripts/make_framework_fixtures.py keras2
    /tmp/fx215/bin/python scripts/make_framework_fixtures.py keras2-static
JAX (Flax NNX, Flax Linen, Equinox) through jax2onnx, in a throw-away venv:
    python3 -m venv /tmp/jaxvenv
    /tmp/jaxvenv/bin/pip install jax jaxlib flax jax2onnx equinox
    /tmp/jaxvenv/bin/python scripts/make_framework_fixtures.py jax
Every model: input "x", batch 2, 8 channels in 4 groups, random affine (the JAX and static Keras 2
sets vary groups, rank, affine and dtype: see their tables); channels last for TensorFlow and
Flax (NHWC), channels first for paddle and Equinox (NCHW). Reference inputs and outputs go beside
each model as .npz, so the tests check against the framework itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data"
GROUPS, CHANNELS, H, W = 4, 8, 5, 6


def _save_io(name: str, x: np.ndarray, y: np.ndarray) -> None:
    np.savez(OUT / f"{name}.npz", x=x, y=y)
    print(f"wrote {name}.onnx and {name}.npz")


def keras_group_normalization(name: str = "keras_groupnorm") -> None:
    """keras.layers.GroupNormalization: Keras 3 uses moments, Keras 2 tf.nn.weighted_moments."""
    import keras
    import tensorflow as tf
    import tf2onnx

    keras.utils.set_random_seed(0)
    layer = keras.layers.GroupNormalization(groups=GROUPS, axis=-1, epsilon=1e-3)
    layer.build((None, H, W, CHANNELS))
    layer.gamma.assign(np.random.default_rng(1).uniform(0.5, 1.5, CHANNELS))
    layer.beta.assign(np.random.default_rng(2).normal(size=CHANNELS))
    spec = (tf.TensorSpec((None, H, W, CHANNELS), tf.float32, name="x"),)
    fn = tf.function(lambda x: layer(x))
    tf2onnx.convert.from_function(
        fn, input_signature=spec, opset=17, output_path=str(OUT / f"{name}.onnx")
    )
    x = np.random.default_rng(3).normal(size=(2, H, W, CHANNELS)).astype(np.float32) * 2 + 1
    _save_io(name, x, fn(tf.constant(x)).numpy())


# name: (groups of each GN, affine, dtype, tf2onnx opset, batch). Static shapes: tf2onnx folds
# weighted_moments' sum of weights into an initializer; "unit" keeps Keras' initial gamma = 1,
# beta = 0, which TensorFlow's optimizer folds away (at batch 1 into an Expand).
KERAS2_STATIC = {
    "keras2_static_groupnorm": ((4,), "random", "float32", 17, 2),
    "keras2_static_g1_noaffine": ((1,), "none", "float32", 13, 2),
    "keras2_static_unit_affine": ((4,), "unit", "float32", 17, 2),
    "keras2_static_fp16": ((4,), "random", "float16", 17, 2),
    "keras2_static_two_gn": ((4, 2), "random", "float32", 13, 2),
    "keras2_static_b1_unit_affine": ((4,), "unit", "float32", 17, 1),
}


def keras2_static_group_normalization() -> None:
    """Keras 2 GroupNormalization (tf.nn.weighted_moments) with a static input shape: x → GN,
    or x → GN → SiLU, + x → GN for two groups."""
    import keras
    import tensorflow as tf
    import tf2onnx

    for name, (groups, affine, dtype, opset, batch) in KERAS2_STATIC.items():
        shape = (batch, H, W, CHANNELS)
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(6)
        inputs = keras.Input(shape[1:], batch_size=batch, dtype=dtype)
        hidden = inputs
        for index, g in enumerate(groups):
            layer = keras.layers.GroupNormalization(
                groups=g, epsilon=1e-3, center=affine != "none", scale=affine != "none", dtype=dtype
            )
            hidden = layer(tf.nn.silu(hidden) + inputs if index else hidden)
            if affine == "random":
                layer.gamma.assign(rng.uniform(0.5, 1.5, CHANNELS).astype(dtype))
                layer.beta.assign(rng.normal(size=CHANNELS).astype(dtype))
        model = keras.Model(inputs, hidden)
        fn = tf.function(lambda x, model=model: model(x))
        spec = (tf.TensorSpec(shape, dtype, name="x"),)
        tf2onnx.convert.from_function(
            fn, input_signature=spec, opset=opset, output_path=str(OUT / f"{name}.onnx")
        )
        x = (rng.normal(size=shape) * 2 + 1).astype(dtype)
        _save_io(name, x, fn(tf.constant(x)).numpy())


def tfa_group_normalization() -> None:
    """tensorflow-addons' GroupNormalization math (tf.nn.moments + batch_normalization)."""
    import tensorflow as tf
    import tf2onnx

    rng = np.random.default_rng(4)
    gamma_values = rng.uniform(0.5, 1.5, CHANNELS).astype(np.float32)
    beta_values = rng.normal(size=CHANNELS).astype(np.float32)

    def group_norm(x: tf.Tensor) -> tf.Tensor:
        # Constants made inside the function: captured tensors would become graph inputs.
        gamma, beta = tf.constant(gamma_values), tf.constant(beta_values)
        shape = tf.shape(x)
        grouped = tf.reshape(x, [shape[0], H, W, GROUPS, CHANNELS // GROUPS])
        mean, variance = tf.nn.moments(grouped, [1, 2, 4], keepdims=True)
        g = tf.reshape(gamma, [1, 1, 1, GROUPS, CHANNELS // GROUPS])
        b = tf.reshape(beta, [1, 1, 1, GROUPS, CHANNELS // GROUPS])
        normalized = tf.nn.batch_normalization(grouped, mean, variance, b, g, 1e-3)
        return tf.reshape(normalized, shape)

    spec = (tf.TensorSpec((None, H, W, CHANNELS), tf.float32, name="x"),)
    fn = tf.function(group_norm)
    tf2onnx.convert.from_function(
        fn, input_signature=spec, opset=17, output_path=str(OUT / "tfa_groupnorm.onnx")
    )
    x = rng.normal(size=(2, H, W, CHANNELS)).astype(np.float32) * 2 + 1
    _save_io("tfa_groupnorm", x, fn(tf.constant(x)).numpy())


def paddle_group_norm() -> None:
    import paddle

    paddle.seed(0)
    layer = paddle.nn.GroupNorm(num_groups=GROUPS, num_channels=CHANNELS)
    rng = np.random.default_rng(5)
    layer.weight.set_value(rng.uniform(0.5, 1.5, CHANNELS).astype(np.float32))
    layer.bias.set_value(rng.normal(size=CHANNELS).astype(np.float32))
    layer.eval()
    spec = [paddle.static.InputSpec([None, CHANNELS, H, W], "float32", "x")]
    paddle.onnx.export(layer, str(OUT / "paddle_groupnorm"), input_spec=spec, opset_version=17)
    x = rng.normal(size=(2, CHANNELS, H, W)).astype(np.float32) * 2 + 1
    _save_io("paddle_groupnorm", x, layer(paddle.to_tensor(x)).numpy())


# name: (library, spatial shape, groups of each GN, affine). Dynamic batch, opset 23.
JAX = {
    "jax_nnx_2d": ("nnx", (5, 6), (4,), True),
    "jax_nnx_1d_g1": ("nnx", (7,), (1,), True),
    "jax_nnx_3d_gc_noaffine": ("nnx", (3, 4, 5), (CHANNELS,), False),
    "jax_nnx_two_gn": ("nnx", (5, 6), (4, 2), True),
    "jax_linen_2d": ("linen", (5, 6), (4,), True),
    "jax_linen_1d_gc_noaffine": ("linen", (7,), (CHANNELS,), False),
    "jax_eqx_2d": ("eqx", (5, 6), (4,), True),
    "jax_eqx_1d_g1_noaffine": ("eqx", (7,), (1,), False),
    "jax_eqx_3d_gc": ("eqx", (3, 4, 5), (CHANNELS,), True),
    "jax_eqx_two_gn": ("eqx", (5, 6), (4, 2), True),
}


def _jax_norm(library: str, groups: int, affine: bool, rng: np.random.Generator) -> Any:
    """One GroupNorm of ``library`` over 8 channels, its scale and bias random when affine."""
    import equinox as eqx
    import flax.linen as linen
    import jax.numpy as jnp
    from flax import nnx

    scale = jnp.asarray(rng.uniform(0.5, 1.5, CHANNELS))
    bias = jnp.asarray(rng.normal(size=CHANNELS))
    if library == "nnx":
        gn = nnx.GroupNorm(
            CHANNELS, num_groups=groups, use_bias=affine, use_scale=affine, rngs=nnx.Rngs(0)
        )
        if affine:
            gn.scale.value, gn.bias.value = scale, bias
        return gn
    if library == "linen":
        module = linen.GroupNorm(num_groups=groups, use_bias=affine, use_scale=affine)
        params = {"scale": scale, "bias": bias} if affine else {}
        return lambda x: module.apply({"params": params}, x)
    gn = eqx.nn.GroupNorm(groups=groups, channels=CHANNELS, channelwise_affine=affine)
    return eqx.tree_at(lambda m: (m.weight, m.bias), gn, (scale, bias)) if affine else gn


def _jax_model(
    library: str, groups: tuple[int, ...], affine: bool, rng: np.random.Generator
) -> Callable[[Any], Any]:
    """x → GN, or x → GN → SiLU, + x → GN; Equinox's per sample, under jax.vmap."""
    import jax

    norms = [_jax_norm(library, g, affine, rng) for g in groups]

    def model(x: jax.Array) -> jax.Array:
        hidden = norms[0](x)
        for norm in norms[1:]:
            hidden = norm(jax.nn.silu(hidden) + x)
        return hidden

    return jax.vmap(model) if library == "eqx" else model


def jax_group_norms() -> None:
    """Flax NNX and Linen GroupNorm (channels last) and Equinox's under jax.vmap (channels
    first), through jax2onnx at opset 23 with a dynamic batch."""
    import onnx
    from jax2onnx import to_onnx

    for name, (library, spatial, groups, affine) in JAX.items():
        rng = np.random.default_rng(7)
        fn = _jax_model(library, groups, affine, rng)
        per_sample = (CHANNELS, *spatial) if library == "eqx" else (*spatial, CHANNELS)
        model = to_onnx(fn, [("B", *per_sample)], input_names=["x"], opset=23)
        onnx.save(model, OUT / f"{name}.onnx")
        x = (rng.normal(size=(2, *per_sample)) * 2 + 1).astype(np.float32)
        _save_io(name, x, np.asarray(fn(x)))


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = sys.argv[1:] or ["keras", "tfa", "paddle"]
    jobs = {
        "keras": keras_group_normalization,
        "keras2": lambda: keras_group_normalization("keras2_groupnorm"),
        "keras2-static": keras2_static_group_normalization,
        "tfa": tfa_group_normalization,
        "jax": jax_group_norms,
        "paddle": paddle_group_norm,
    }
    for name in wanted:
        jobs[name]()
