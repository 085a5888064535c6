"""GN from other frameworks: Keras 3 and Keras 2 (channels last, via tf2onnx; Keras 2 through
tf.nn.weighted_moments with div_no_nan guards), tensorflow-addons' math, paddle.

The models in tests/data/ were made by scripts/make_framework_fixtures.py (TensorFlow and
paddle are too heavy to install for every test run); beside each is the framework's own output.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from gn_deploy.fusion import fuse_model
from gn_deploy.reference import relative_l2
from tests.helpers import run_ort, run_reference

DATA = Path(__file__).parent / "data"
FIXTURES = [
    ("keras_groupnorm", "moments-folded", 2),
    ("keras2_groupnorm", "moments-folded", 2),
    ("tfa_groupnorm", "moments-folded", 2),
    ("paddle_groupnorm", "instancenorm-sandwich", 0),
]
TARGETS = [("onnx", "GroupNormalization", run_ort), ("trt-plugin", "FusedGroupNorm", run_reference)]


@pytest.mark.parametrize(("target", "op", "run"), TARGETS, ids=[t[0] for t in TARGETS])
@pytest.mark.parametrize(("name", "family", "transposes"), FIXTURES, ids=[f[0] for f in FIXTURES])
def test_fused_and_equal_to_the_framework(
    tmp_path: Path, name: str, family: str, transposes: int, target: str, op: str, run
) -> None:
    src = DATA / f"{name}.onnx"
    out = tmp_path / "f.onnx"
    (site,) = fuse_model(src, out, target=target).sites
    assert (site.status, site.family, site.num_groups, site.channels) == ("fused", family, 4, 8)
    counts = Counter(n.op_type for n in onnx.load(out).graph.node)
    assert counts == Counter({op: 1, **({"Transpose": transposes} if transposes else {})})
    onnx.checker.check_model(onnx.load(out), full_check=True)
    reference = np.load(DATA / f"{name}.npz")
    (got,) = run(out, {"x": reference["x"]})
    (original,) = run_ort(src, {"x": reference["x"]})
    assert relative_l2(got, original) <= 1e-5
    assert relative_l2(got, reference["y"]) <= 1e-5
