"""Generate the Keras/tf2onnx and paddle2onnx GN test models in tests/data/ (run once, commit).

Needs packages the test suite does not install (too heavy for CI):
    python3 -m venv /tmp/fx
    /tmp/fx/bin/pip install tensorflow-cpu tf2onnx paddlepaddle paddle2onnx
    /tmp/fx/bin/python scripts/make_framework_fixtures.py keras tfa paddle
Keras 2 (the Keras of most deployed TensorFlow models) needs TensorFlow 2.15 in its own venv:
    python3 -m venv /tmp/fx215
    /tmp/fx215/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.17.0 onnx==1.16.2
    /tmp/fx215/bin/python scripts/make_framework_fixtures.py keras2
Every model: input "x", batch 2, 8 channels in 4 groups, random affine; channels last for
TensorFlow (NHWC), channels first for paddle (NCHW). Reference inputs and outputs go beside each
model as .npz, so the tests check against the framework itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

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


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = sys.argv[1:] or ["keras", "tfa", "paddle"]
    jobs = {
        "keras": keras_group_normalization,
        "keras2": lambda: keras_group_normalization("keras2_groupnorm"),
        "tfa": tfa_group_normalization,
        "paddle": paddle_group_norm,
    }
    for name in wanted:
        jobs[name]()
