"""gn-deploy's ONNX Runtime op library: the CPU kernels against the float64 reference, results
independent of threads and task order, ONNX Runtime's errors for hostile inputs, and the
library loaded into the oldest supported ONNX Runtime."""

from __future__ import annotations

import ctypes
import os
import random
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from gn_deploy import ort_library
from gn_deploy.errors import GnDeployError
from gn_deploy.kernels import DType, Layout, Params, Status
from gn_deploy.reference import (
    ELEMENT_TOLERANCES,
    group_norm_reference,
    max_element_error,
    relative_l2,
    tolerance_for,
)
from tests.helpers import fused_proto, require_ort_library

DTYPES = {DType.FLOAT32: np.float32, DType.FLOAT16: np.float16, DType.BFLOAT16: ml_dtypes.bfloat16}
ELEMENT = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}
require_ort_library()

ORDER = ["baseline", "avx2", "avx512"]
# Every instruction set up to this CPU's best: the lower ones are what other machines run.
ISAS = ORDER[: ORDER.index(ort_library.cpu_isa()) + 1]

TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)
PARALLEL_FOR = ctypes.CFUNCTYPE(
    ctypes.c_int32, ctypes.c_void_p, TASK, ctypes.c_void_p, ctypes.c_size_t
)


def _shuffled_on_threads(threads: int, seed: int) -> PARALLEL_FOR:
    """A parallel-for that runs the tasks on ``threads`` threads in a shuffled order (each call
    into the task releases the GIL, so they do run at once)."""

    def run(_runner: int, task: TASK, data: int, count: int) -> int:
        order = list(range(count))
        random.Random(seed).shuffle(order)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda i: task(data, i), order))
        return 0

    return PARALLEL_FOR(run)


def cpu_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    groups: int,
    activation: int,
    layout: Layout,
    isa: str | None = None,
    parallel_for: PARALLEL_FOR | None = None,
) -> tuple[int, np.ndarray]:
    """gn_cpu_forward_isa on numpy arrays (x in the given layout); its status and y."""
    lib = ort_library._cdll()
    dtype = next(k for k, v in DTYPES.items() if v == x.dtype)
    channels = x.shape[-1] if layout == Layout.NHWC else x.shape[1]
    spatial = x.size // max(1, x.shape[0] * channels) if x.size else 0
    params = Params(x.shape[0], channels, spatial, groups, 1e-5, activation, layout, dtype)
    y = np.full_like(x, np.nan)
    status = lib.gn_cpu_forward_isa(
        isa.encode() if isa else None,
        ctypes.byref(params),
        ctypes.c_void_p(x.ctypes.data),
        ctypes.c_void_p(gamma.ctypes.data),
        ctypes.c_void_p(beta.ctypes.data),
        ctypes.c_void_p(y.ctypes.data),
        parallel_for,
        None,
    )
    return status, y


def _check_against_reference(x: np.ndarray, groups: int, activation: int, layout: Layout,
                             isa: str) -> None:
    rng = np.random.default_rng(1)
    channels = x.shape[1]
    gamma = rng.standard_normal(channels).astype(np.float32)
    beta = rng.standard_normal(channels).astype(np.float32)
    given_x = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == Layout.NHWC else x
    status, y = cpu_forward(given_x, gamma, beta, groups, activation, layout, isa)
    assert status == Status.SUCCESS
    if layout == Layout.NHWC:
        y = np.moveaxis(y, -1, 1)
    ref = group_norm_reference(x.astype(np.float64), groups, 1e-5, gamma, beta, activation)
    assert relative_l2(y.astype(np.float64), ref) <= tolerance_for(str(np.dtype(x.dtype)))


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 3),
    group_size=st.integers(1, 24),
    groups=st.sampled_from([1, 2, 3, 8, 32]),
    spatial=st.lists(st.integers(1, 19), min_size=1, max_size=3),
    dtype=st.sampled_from(list(DTYPES)),
    layout=st.sampled_from(list(Layout)),
    activation=st.integers(0, 1),
    isa=st.sampled_from(ISAS),
    mean=st.sampled_from([0.0, 3.0, 200.0]),
)
def test_matches_float64_reference(n: int, group_size: int, groups: int, spatial: list[int],
                                   dtype: DType, layout: Layout, activation: int, isa: str,
                                   mean: float) -> None:
    shape = (n, groups * group_size, *spatial)
    x = (np.random.default_rng(0).standard_normal(shape) + mean).astype(DTYPES[dtype])
    _check_against_reference(x, groups, activation, layout, isa)


@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize("isa", ISAS)
def test_large_groups_and_large_means(layout: Layout, isa: str) -> None:
    """Groups of many chunks, values 1000 + N(0, 1): the shifted chunk statistics keep fp32."""
    x = (1000 + np.random.default_rng(2).standard_normal((1, 64, 37, 41))).astype(np.float32)
    _check_against_reference(x, 4, 1, layout, isa)


@pytest.mark.parametrize("dtype", list(DTYPES.values()))
@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize(
    ("shape", "groups"),
    [((1, 32, 96, 96), 4), ((5, 64, 11, 11), 4), ((1, 4, 9000), 4), ((1, 8, 70, 70), 1)],
)
def test_threads_and_task_order_change_no_bit(layout: Layout, shape: tuple[int, ...],
                                              groups: int, dtype: type) -> None:
    """Serially one run of all groups, each group's statistics riding along the previous one's
    normalisation; on threads, runs of fewer groups, or (fewer groups than twice the cores)
    chunks in two rounds: the same bits."""
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    x[0, 0] += 50  # the first chunk apart: the statistics are summed again about the mean
    if layout == Layout.NHWC:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    gamma, beta = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)
    _, serial = cpu_forward(x, gamma, beta, groups, 1, layout)
    for threads, seed in [(2, 0), (4, 1), (3, 2)]:
        status, y = cpu_forward(x, gamma, beta, groups, 1, layout,
                                parallel_for=_shuffled_on_threads(threads, seed))
        assert status == Status.SUCCESS
        assert np.array_equal(y.view(np.uint8), serial.view(np.uint8))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(
    ("channels", "level"),
    [(1024, 1000.0), (1024, 2.0), (16, 1e4), (16, 0.5)],
    ids=["far-1024-chunks", "near-1024-chunks", "far-16-chunks", "near-16-chunks"],
)
def test_group_whose_first_chunk_sits_apart(channels: int, level: float, isa: str) -> None:
    """NCHW statistics are summed about the mean of a group's first chunk: a first channel
    (one chunk) shifted by `level` from the rest puts the group's mean far from it (summed
    again about the mean) or near it (kept); both within the fp32 bound, and one value far off
    the group too."""
    x = np.random.default_rng(6).standard_normal((1, channels, 64, 64)).astype(np.float32)
    x[0, 0] += np.float32(level)
    _check_against_reference(x, 1, 0, Layout.NCHW, isa)
    x[0, 0, 0, 0] = np.float32(1e6)
    _check_against_reference(x, 1, 1, Layout.NCHW, isa)


@pytest.mark.parametrize("isa", ISAS)
def test_far_first_chunk_of_a_large_group_loses_no_digits(isa: str) -> None:
    """A group of 2048 chunks whose first chunk sits 100 apart from the rest (spread 0.01):
    summed about that chunk's mean alone, the squared deviations would lose about 5e-6 of
    relative accuracy; summed again about the group's mean they keep two-pass accuracy."""
    x = (np.random.default_rng(7).standard_normal((1, 1, 2048, 4096)) * 0.01).astype(np.float32)
    x[0, 0, 0] += np.float32(100.0)
    gamma, beta = np.ones(1, np.float32), np.zeros(1, np.float32)
    status, y = cpu_forward(x, gamma, beta, 1, 0, Layout.NCHW, isa)
    assert status == Status.SUCCESS
    ref = group_norm_reference(x.astype(np.float64), 1, 1e-5, gamma, beta, 0)
    assert relative_l2(y, ref) <= 1e-6


@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("isa", ISAS)
def test_silu_at_extreme_preactivations(layout: Layout, dtype: DType, isa: str) -> None:
    """SiLU where e^-v overflows fp32 (v below -88) or vanishes, each element within the design's
    bound: one channel a group, shifted by beta from -1000 to 1000 with gamma 40."""
    x = np.random.default_rng(5).standard_normal((2, 9, 7, 5))
    beta = np.array([-1000, -120, -89, -87, 0, 87, 89, 120, 1000], np.float32)
    gamma = np.full(9, 40.0, np.float32)
    x = x.astype(DTYPES[dtype])
    given_x = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == Layout.NHWC else x
    status, y = cpu_forward(given_x, gamma, beta, 9, 1, layout, isa)
    assert status == Status.SUCCESS
    if layout == Layout.NHWC:
        y = np.moveaxis(y, -1, 1)
    ref = group_norm_reference(x.astype(np.float64), 9, 1e-5, gamma, beta, 1)
    name = str(np.dtype(DTYPES[dtype]))
    assert max_element_error(y, ref) <= ELEMENT_TOLERANCES[name]


def test_nan_stays_in_its_group() -> None:
    x = np.random.default_rng(4).standard_normal((2, 8, 5, 5)).astype(np.float32)
    x[1, 2, 3, 3] = np.nan
    _, y = cpu_forward(x, np.ones(8, np.float32), np.zeros(8, np.float32), 4, 0, Layout.NCHW)
    nan = np.isnan(y).reshape(2, 4, -1).all(axis=2)
    assert nan.tolist() == [[False] * 4, [False, True, False, False]]


def test_refuses_bad_params_without_touching_memory() -> None:
    x = np.zeros((1, 6, 4), np.float32)
    ones = np.ones(6, np.float32)
    status, _ = cpu_forward(x, ones, ones, 4, 0, Layout.NCHW)
    assert status == Status.INVALID_GROUPS
    status, _ = cpu_forward(x, ones, ones, 3, 0, Layout.NCHW, isa="sse9")
    assert status == Status.INVALID_PATH


# ---- through ONNX Runtime ------------------------------------------------------------------


def fused_model(
    channels: int,
    element: int = TensorProto.FLOAT,
    gamma_length: int | None = None,
    **attributes: object,
) -> onnx.ModelProto:
    """FusedGroupNorm node gn0 (num_groups 4, SiLU unless attributes are given) with gamma
    linspace(0.5, 2) and beta linspace(-1, 1) of ``gamma_length`` (default: channels)."""
    length = channels if gamma_length is None else gamma_length
    gamma = np.linspace(0.5, 2, length).astype(np.float32)
    beta = np.linspace(-1, 1, length).astype(np.float32)
    attributes = attributes or {"num_groups": 4, "epsilon": 1e-5, "activation": 1}
    return fused_proto(gamma, beta, element, **attributes)


def run_ort(model: onnx.ModelProto, x: np.ndarray, threads: int = 1) -> np.ndarray:
    options = ort_library.session_options(threads)
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(2, 16, 7, 9), (1, 8, 33), (1, 16, 3, 4, 5)])
def test_onnxruntime_matches_reference(dtype: type, shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    y = run_ort(fused_model(shape[1], ELEMENT[dtype]), x)
    gamma, beta = np.linspace(0.5, 2, shape[1]), np.linspace(-1, 1, shape[1])
    ref = group_norm_reference(x.astype(np.float64), 4, 1e-5, gamma, beta, 1)
    assert y.dtype == dtype
    assert relative_l2(y.astype(np.float64), ref) <= tolerance_for(str(np.dtype(dtype)))


def test_onnxruntime_bfloat16() -> None:
    x = np.random.default_rng(6).standard_normal((2, 8, 6, 6)).astype(ml_dtypes.bfloat16)
    model = fused_model(8, TensorProto.BFLOAT16)
    options = ort_library.session_options(1)
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    value = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(x.view(np.uint16),
                                                            TensorProto.BFLOAT16)
    y = session.run_with_ort_values(["y"], {"x": value})[0]
    raw = (ctypes.c_uint16 * x.size).from_address(y.data_ptr())  # numpy has no bf16 for ORT
    out = np.frombuffer(raw, np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
    out = out.reshape(y.shape())
    ref = group_norm_reference(x.astype(np.float64), 4, 1e-5, np.linspace(0.5, 2, 8),
                               np.linspace(-1, 1, 8), 1)
    assert relative_l2(out, ref) <= tolerance_for("bfloat16")


def test_intra_op_threads_change_no_bit() -> None:
    x = np.random.default_rng(7).standard_normal((1, 32, 64, 64)).astype(np.float32)
    model = fused_model(32)
    one = run_ort(model, x, threads=1)
    for threads in (2, 4):
        assert np.array_equal(run_ort(model, x, threads=threads), one)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"num_groups": 4.0, "epsilon": 1e-5}, "attribute num_groups must be an integer"),
        ({"num_groups": 4}, "missing attribute epsilon"),
        ({"num_groups": 0, "epsilon": 1e-5}, "num_groups must be a positive integer"),
        ({"num_groups": 4, "epsilon": -1.0}, "epsilon must be a finite float >= 0"),
        ({"num_groups": 4, "epsilon": 1e-5, "activation": 2}, "activation must be 0"),
        ({"num_groups": 4, "epsilon": 1e-5, "channels_last": 3}, "channels_last must be 0 or 1"),
        ({"num_groups": 3, "epsilon": 1e-5}, "C = 8 is not divisible by num_groups = 3"),
        ({"num_groups": "4", "epsilon": 1e-5}, "attribute num_groups must be an integer"),
        ({"num_groups": [4], "epsilon": 1e-5}, "attribute num_groups must be an integer"),
        ({"num_groups": 4, "epsilon": [1e-5]}, "attribute epsilon must be a float"),
    ],
)
def test_bad_attributes_name_the_node(attributes: dict[str, object], message: str) -> None:
    x = np.zeros((1, 8, 2, 2), np.float32)
    with pytest.raises(Exception, match=f"node 'gn0'.*{message}"):
        run_ort(fused_model(8, **attributes), x)


def test_integer_epsilon_is_accepted_as_the_plugin_does() -> None:
    x = np.random.default_rng(8).standard_normal((1, 8, 3, 3)).astype(np.float32)
    y = run_ort(fused_model(8, num_groups=2, epsilon=0), x)
    ref = group_norm_reference(x.astype(np.float64), 2, 0.0, np.linspace(0.5, 2, 8),
                               np.linspace(-1, 1, 8), 0)
    assert relative_l2(y.astype(np.float64), ref) <= 1e-5


@pytest.mark.parametrize(
    ("shape", "gamma_length", "message"),
    [
        ((2, 8), None, r"x must be 3-D to 5-D \[N, C, \*spatial\], not \[2, 8\]"),
        ((1, 8, 1, 1, 1, 2), None, "x must be 3-D to 5-D"),
        ((1, 8, 4, 4), 6, r"gamma has shape \[6\], not \[8\]"),
        ((1, 0, 4, 4), 0, "C = 0 is not divisible"),
    ],
)
def test_bad_shapes_name_the_node(shape: tuple[int, ...], gamma_length: int | None,
                                  message: str) -> None:
    with pytest.raises(Exception, match=f"node 'gn0'.*{message}"):
        run_ort(fused_model(8, gamma_length=gamma_length), np.zeros(shape, np.float32))


def test_unsupported_dtype_is_refused_at_load() -> None:
    with pytest.raises(Exception, match=r"FusedGroupNorm.*gn0"):
        run_ort(fused_model(8, TensorProto.DOUBLE), np.zeros((1, 8, 2, 2)))


@pytest.mark.parametrize("shape", [(0, 8, 4, 4), (2, 8, 0, 4), (1, 8, 0)])
def test_empty_tensors_are_a_no_op(shape: tuple[int, ...]) -> None:
    assert run_ort(fused_model(8), np.zeros(shape, np.float32)).shape == shape


def test_missing_compiler_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(GnDeployError, match=r"no C\+\+ compiler found .*set CXX"):
        ort_library.compiler()


def test_library_given_by_environment_must_exist(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv(ort_library.LIBRARY_ENV, str(tmp_path / "nope.so"))
    with pytest.raises(GnDeployError, match=r"GN_DEPLOY_ORT_LIB=.*no such file"):
        ort_library.library_path()


OLDEST_ENV = "GN_DEPLOY_ORT_OLDEST_PYTHON"

_OLDEST_SCRIPT = """
import sys, numpy as np, onnxruntime as ort
model, library, data, out = sys.argv[1:]
options = ort.SessionOptions()
options.register_custom_ops_library(library)
try:
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    np.save(out, session.run(None, {"x": np.load(data)})[0])
except Exception as exc:
    print("error:", exc)
print(ort.__version__)
"""


def _run_in_oldest(tmp_path: Path, model: onnx.ModelProto, x: np.ndarray) -> str:
    """Run ``model`` on ``x`` in the oldest supported onnxruntime with the library; what it
    printed (its version last; y saved to y.npy)."""
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run(
        [os.environ[OLDEST_ENV], "-c", _OLDEST_SCRIPT, str(tmp_path / "m.onnx"),
         str(ort_library.library_path()), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1.20.1"
    return done.stdout


NEEDS_OLDEST = pytest.mark.skipif(
    OLDEST_ENV not in os.environ,
    reason=f"needs ${OLDEST_ENV}: a Python with the oldest supported onnxruntime "
    "(make test sets it up)",
)


@NEEDS_OLDEST
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_runs_in_the_oldest_supported_onnxruntime(tmp_path: Path, dtype: type) -> None:
    """Large enough to go through ONNX Runtime's thread pool (KernelContext_ParallelFor)."""
    x = np.random.default_rng(9).standard_normal((2, 8, 64, 64)).astype(dtype)
    model = fused_model(8, ELEMENT[dtype])
    _run_in_oldest(tmp_path, model, x)
    assert np.array_equal(np.load(tmp_path / "y.npy"), run_ort(model, x))


@NEEDS_OLDEST
@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"num_groups": "4", "epsilon": 1e-5}, "attribute num_groups must be an integer"),
        ({"num_groups": [4], "epsilon": 1e-5}, "attribute num_groups must be an integer"),
        ({"num_groups": 4, "epsilon": [1e-5]}, "attribute epsilon must be a float"),
        ({"num_groups": 3, "epsilon": 1e-5}, "C = 8 is not divisible by num_groups = 3"),
    ],
)
def test_refuses_in_the_oldest_supported_onnxruntime(
    tmp_path: Path, attributes: dict[str, object], message: str
) -> None:
    x = np.zeros((1, 8, 2, 2), np.float32)
    said = _run_in_oldest(tmp_path, fused_model(8, **attributes), x)
    assert re.search(f"error:.*node 'gn0'.*{message}", said), said

FRAMEWORK_MODELS = sorted(p.stem for p in (Path(__file__).parent / "data").glob("*.npz"))


@pytest.mark.parametrize("name", FRAMEWORK_MODELS)
def test_fused_framework_models_match_the_framework(name: str, tmp_path: Path) -> None:
    """Each framework's exported GN, fused for fused-op, on ONNX Runtime with the library."""
    from gn_deploy.fusion import fuse_model
    from tests.helpers import run_ort

    data = Path(__file__).parent / "data"
    report = fuse_model(data / f"{name}.onnx", tmp_path / "f.onnx", target="fused-op")
    assert report.count("fused") >= 1
    reference = np.load(data / f"{name}.npz")
    (got,) = run_ort(tmp_path / "f.onnx", {"x": reference["x"]})
    error = relative_l2(got.astype(np.float64), reference["y"].astype(np.float64))
    assert error <= tolerance_for(str(reference["y"].dtype))


def test_vae_decoder_fused_matches_torch(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the built-in models are torch modules")
    from gn_deploy.export import export_model
    from gn_deploy.fusion import fuse_model
    from gn_deploy.parity import validate

    src, fused = tmp_path / "vae.onnx", tmp_path / "vae.op.onnx"
    factory = "gn_deploy.models:sd_vae_decoder"
    export_model(factory, ["x:1x4x8x8"], src, exporter="torchscript")
    assert fuse_model(src, fused, target="fused-op").count("fused") == 30
    report = validate(factory, [src, fused], ["x:1x4x8x8"])
    assert report.ok, report.table()


def test_library_builds_without_a_warning() -> None:
    log = ort_library.library_path().parent / ort_library.BUILD_LOG
    assert log.read_text() == ""


def test_without_a_compiler_fuse_still_works_and_says_what_it_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proof falls back to ONNX's reference evaluator; the gate says it checked less."""
    from gn_deploy.fusion import fuse_model

    monkeypatch.setenv("CXX", "no-such-compiler")
    ort_library._cached_build.cache_clear()
    try:
        data = Path(__file__).parent / "data"
        report = fuse_model(data / "keras_groupnorm.onnx", tmp_path / "f.onnx", target="fused-op")
    finally:
        ort_library._cached_build.cache_clear()
    assert report.count("fused") == 1
    assert "no C++ compiler found" in capsys.readouterr().err


def test_the_gate_loads_fused_op_models_in_onnxruntime(tmp_path: Path) -> None:
    """A FusedGroupNorm model ONNX's checker passes (it does not type-check custom domains) but
    ONNX Runtime will not load (fp16 x, float32 y declared) is refused before it is written."""
    from gn_deploy.validity import check_model_file

    def model(y_type: int) -> onnx.ModelProto:
        proto = fused_model(8, TensorProto.FLOAT16)
        for value in (proto.graph.input[0], proto.graph.output[0]):
            typed = helper.make_tensor_value_info(value.name, TensorProto.FLOAT16, [1, 8, 2, 2])
            value.CopyFrom(typed)
        proto.graph.output[0].type.tensor_type.elem_type = y_type
        return proto

    good = tmp_path / "good.onnx"
    onnx.save(model(TensorProto.FLOAT16), good)
    check_model_file(good, good)
    bad_model = model(TensorProto.FLOAT)
    bad = tmp_path / "bad.onnx"
    onnx.save(bad_model, bad)
    onnx.checker.check_model(str(bad), full_check=True)
    with pytest.raises(GnDeployError, match="ONNX Runtime would not load the result"):
        check_model_file(bad, bad)
