"""`gn-deploy bench ort`: every form runs as labelled, fused-op is checked, the tables hold."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gn_deploy.errors import GnDeployError
from gn_deploy.ort_bench import FORMS, Case, LayerShape, _check_fused, bench_ort, layer_model
from tests.helpers import require_ort_library

require_ort_library()

TINY = LayerShape("tiny", 64, 8)
DATA = Path(__file__).parent / "data"


def test_tables_and_what_ran(tmp_path: Path) -> None:
    text = bench_ort([DATA / "keras_groupnorm.onnx"], 2, shapes=[TINY])
    layer_rows = [ln for ln in text.splitlines() if ln.startswith("| tiny")]
    assert [r.split("|")[1].strip() + r.split("|")[2].strip() for r in layer_rows] == [
        "tiny float321", "tiny float322", "tiny float161", "tiny float162"
    ]
    for row in layer_rows:  # four times, two ratios, all positive numbers
        assert all(float(v) > 0 for v in row.split("|")[3:9])
    assert "- fused-op: FusedGroupNorm\n" in text
    model = DATA / "keras_groupnorm.onnx"
    assert text.startswith(f"command: `gn-deploy bench ort {model} --repeat 2`")  # says what ran
    assert "- floor: Expand\n" in text
    assert re.search(r"- sandwich: .*InstanceNormalization", text)
    model_row = next(ln for ln in text.splitlines() if ln.startswith("| keras_groupnorm.onnx"))
    assert model_row.split("|")[2].strip() == "1"  # one GN fused


@pytest.mark.parametrize("form", FORMS)
def test_each_form_computes_or_copies_x(form: str, tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal(TINY.dims).astype(np.float32)
    y = Case(layer_model(form, TINY, np.float32), 1, tmp_path).run({"x": x})[0]
    if form == "floor":
        assert np.array_equal(y, x)
    else:  # every GN form gives the same GN + SiLU
        fused = Case(layer_model("fused-op", TINY, np.float32), 1, tmp_path).run({"x": x})[0]
        assert np.allclose(y, fused, atol=1e-4)


def test_a_case_that_lost_the_op_stops_the_bench(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal(TINY.dims).astype(np.float32)
    with pytest.raises(GnDeployError, match="not FusedGroupNorm"):
        _check_fused(Case(layer_model("floor", TINY, np.float32), 1, tmp_path), TINY, x)
