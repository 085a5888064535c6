"""GN from other frameworks: Keras 3 and Keras 2 (channels last, via tf2onnx; Keras 2 through
tf.nn.weighted_moments with div_no_nan guards, its sum of weights folded into an initializer when
shapes are static), tensorflow-addons' math, paddle, and JAX through jax2onnx: Flax NNX and Linen
(channels last, variance clamped by Max) and Equinox under jax.vmap (channels first per sample,
the batch folded away and back, constant groups centred to 0 through Where).

The models in tests/data/ were made by scripts/make_framework_fixtures.py (TensorFlow, paddle and
JAX are too heavy to install for every test run); beside each is the framework's own output.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from gn_deploy.fusion import fuse_model, inspect_model
from gn_deploy.reference import relative_l2, tolerance_for
from tests.helpers import run_ort, run_reference

DATA = Path(__file__).parent / "data"
CHANNELS = 8
KERAS2_STATIC = [
    ("keras2_static_groupnorm", (4,)),
    ("keras2_static_g1_noaffine", (1,)),
    ("keras2_static_unit_affine", (4,)),
    ("keras2_static_fp16", (4,)),
    ("keras2_static_two_gn", (4, 2)),
    ("keras2_static_b1_unit_affine", (4,)),
]
FLAX = [
    ("jax_nnx_2d", (4,)),
    ("jax_nnx_1d_g1", (1,)),
    ("jax_nnx_3d_gc_noaffine", (CHANNELS,)),
    ("jax_nnx_two_gn", (4, 2)),
    ("jax_linen_2d", (4,)),
    ("jax_linen_1d_gc_noaffine", (CHANNELS,)),
]
EQUINOX = [
    ("jax_eqx_2d", (4,)),
    ("jax_eqx_1d_g1_noaffine", (1,)),
    ("jax_eqx_3d_gc", (CHANNELS,)),
    ("jax_eqx_two_gn", (4, 2)),
]
# name, family, groups of each GN in the model, Transposes per fused site (channels last: 2)
FIXTURES = [
    ("keras_groupnorm", "moments-folded", (4,), 2),
    ("keras2_groupnorm", "moments-folded", (4,), 2),
    *[(name, "moments-folded", groups, 2) for name, groups in KERAS2_STATIC],
    ("tfa_groupnorm", "moments-folded", (4,), 2),
    ("paddle_groupnorm", "instancenorm-sandwich", (4,), 0),
    *[(name, "moments", groups, 2) for name, groups in FLAX],
    *[(name, "moments", groups, 0) for name, groups in EQUINOX],
]
TARGETS = [("onnx", "GroupNormalization", run_ort), ("trt-plugin", "FusedGroupNorm", run_reference)]


def _expected_ops(op: str, target: str, sites: int, transposes: int) -> Counter[str]:
    """What a fused model holds: the fused ops, their Transposes and, in the two-GN nets
    (x → GN → SiLU, + x → GN), the residual Add and the SiLU the trt-plugin op folds."""
    silu = {"Sigmoid": sites - 1, "Mul": sites - 1} if target == "onnx" else {}
    return +Counter({op: sites, "Transpose": transposes * sites, "Add": sites - 1, **silu})


@pytest.mark.parametrize(("target", "op", "run"), TARGETS, ids=[t[0] for t in TARGETS])
@pytest.mark.parametrize(
    ("name", "family", "groups", "transposes"), FIXTURES, ids=[f[0] for f in FIXTURES]
)
def test_fused_and_equal_to_the_framework(
    tmp_path: Path,
    name: str,
    family: str,
    groups: tuple[int, ...],
    transposes: int,
    target: str,
    op: str,
    run,
) -> None:
    src = DATA / f"{name}.onnx"
    out = tmp_path / "f.onnx"
    sites = fuse_model(src, out, target=target).sites
    found = [(s.status, s.family, s.num_groups, s.channels) for s in sites]
    assert found == [("fused", family, g, CHANNELS) for g in groups]
    counts = Counter(n.op_type for n in onnx.load(out).graph.node)
    assert counts == _expected_ops(op, target, len(groups), transposes)
    onnx.checker.check_model(onnx.load(out), full_check=True)
    reference = np.load(DATA / f"{name}.npz")
    tolerance = tolerance_for(reference["x"].dtype)
    (got,) = run(out, {"x": reference["x"]})
    (original,) = run_ort(src, {"x": reference["x"]})
    assert got.dtype == reference["y"].dtype
    assert relative_l2(got, original) <= tolerance
    assert relative_l2(got, reference["y"]) <= tolerance


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", [n for n, _ in FLAX + EQUINOX])
def test_jax_exports_keep_their_dynamic_batch(tmp_path: Path, name: str, batch: int) -> None:
    src, out = DATA / f"{name}.onnx", tmp_path / "f.onnx"
    fuse_model(src, out)
    sample = np.load(DATA / f"{name}.npz")["x"].shape[1:]
    x = (np.random.default_rng(batch).standard_normal((batch, *sample)) * 3 + 1).astype(np.float32)
    assert relative_l2(run_ort(out, {"x": x})[0], run_ort(src, {"x": x})[0]) <= 1e-5


def _edited(src: Path, dst: Path, op_type: str, index: int, edit) -> Path:
    """``src`` with the initializer read as input ``index`` of every ``op_type`` node replaced
    by ``edit(value)`` (the shapes the exporter recorded are left to inference)."""
    model = onnx.load(src)
    del model.graph.value_info[:]
    names = {n.input[index] for n in model.graph.node if n.op_type == op_type}
    edited = 0
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name in names:
            value = edit(numpy_helper.to_array(tensor).copy())
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, tensor.name))
            edited += 1
    assert edited, f"no initializer feeds input {index} of {op_type} in {src.name}"
    onnx.save(model, dst)
    return dst


def _refusals(path: Path) -> list[str]:
    sites = inspect_model(path).sites
    assert sites and all(s.status == "refused" for s in sites), sites
    return [s.reason for s in sites]


def _off_by_one(value: np.ndarray) -> np.ndarray:
    value.reshape(-1)[-1] += 1
    return value


@pytest.mark.parametrize("edit", [lambda v: v + 1, _off_by_one], ids=["all", "one-element"])
def test_folded_sum_of_weights_must_be_the_group_count(tmp_path: Path, edit) -> None:
    """The divisor tf2onnx folded (60 = 5 x 6 x 2 per group) is read, not assumed: any other
    value, everywhere or in one group, is no mean."""
    src = _edited(DATA / "keras2_static_groupnorm.onnx", tmp_path / "m.onnx", "Div", 1, edit)
    reasons = _refusals(src)
    assert all("divides each group's sum by" in r and "not its 60 elements" in r for r in reasons)


def test_variance_clamped_above_zero_is_not_a_variance(tmp_path: Path) -> None:
    src = _edited(DATA / "jax_nnx_2d.onnx", tmp_path / "m.onnx", "Max", 1, lambda v: v + 0.5)
    assert _refusals(src) == ["the divisor is not the population variance of each group"]


def test_centring_guard_must_test_the_whole_group(tmp_path: Path) -> None:
    """Equinox zeroes the deviations of a group whose minimum is its maximum; a minimum over
    part of the group is another condition."""
    src = _edited(DATA / "jax_eqx_2d.onnx", tmp_path / "m.onnx", "ReduceMin", 1, lambda v: v[1:])
    reasons = _refusals(src)
    assert all("replaced (Where)" in r for r in reasons), reasons


def test_equinox_constant_group_still_normalizes_to_beta(tmp_path: Path) -> None:
    """Equinox forces a constant group's deviations to 0 (output beta); the fused op computes
    them, ~0 for a constant: the two agree on it and everywhere else."""
    src, out = DATA / "jax_eqx_2d.onnx", tmp_path / "f.onnx"
    fuse_model(src, out)
    fused = onnx.load(out)
    (gn,) = fused.graph.node
    beta = next(numpy_helper.to_array(t) for t in fused.graph.initializer if t.name == gn.input[2])
    x = np.load(DATA / "jax_eqx_2d.npz")["x"].copy()
    x[0, 2:4] = 0.3  # sample 0, group 1 of 4 (channels 2 and 3)
    (got,), (original,) = run_ort(out, {"x": x}), run_ort(src, {"x": x})
    assert np.all(original[0, 2:4] == beta[2:4, None, None])
    assert np.allclose(got[0, 2:4], original[0, 2:4], rtol=0, atol=1e-4)
    assert relative_l2(got, original) <= 1e-5
