"""Optimization profiles: `--shapes name:MIN,OPT,MAX`, defaults from the model's static dims."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from gn_deploy.errors import UsageError
from gn_deploy.modelio import shown_dims, value_dims

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    name: str
    min: Shape
    opt: Shape
    max: Shape


def _shape(text: str, spec: str) -> Shape:
    if not re.fullmatch(r"\d+(x\d+)*", text):
        raise UsageError(f"--shapes {spec!r}: {text!r} is not a shape like 1x4x64x64")
    return tuple(int(d) for d in text.split("x"))


def parse_shapes(spec: str) -> Profile:
    """``x:1x4x32x32,2x4x64x64,4x4x128x128`` (min, opt, max) or ``x:1x4x64x64`` (all three)."""
    name, sep, rest = spec.partition(":")
    if not sep or not name:
        raise UsageError(f"--shapes {spec!r}: expected NAME:MIN,OPT,MAX, e.g. x:1x4x32x32,...")
    parts = [_shape(p, spec) for p in rest.split(",")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise UsageError(f"--shapes {spec!r}: give one shape or three (MIN,OPT,MAX)")
    low, opt, high = parts
    if not len(low) == len(opt) == len(high):
        raise UsageError(f"--shapes {spec!r}: MIN, OPT and MAX have different ranks")
    if not all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
        raise UsageError(f"--shapes {spec!r}: needs MIN <= OPT <= MAX in every dimension")
    return Profile(name, low, opt, high)


def profiles_for(model: onnx.ModelProto, specs: Sequence[str]) -> list[Profile]:
    """One profile per graph input: from ``specs`` where given, else its static shape."""
    given = {p.name: p for p in (parse_shapes(s) for s in specs)}
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    unknown = set(given) - {i.name for i in inputs}
    if unknown:
        names = ", ".join(i.name for i in inputs)
        raise UsageError(f"--shapes: the model has no input {sorted(unknown)[0]!r} ({names})")
    profiles = []
    for inp in inputs:
        dims = [
            d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim
        ]
        profile = given.get(inp.name)
        if profile is None:
            if any(d is None or d <= 0 for d in dims):
                raise UsageError(
                    f"input {inp.name!r} has dynamic dimensions {shown_dims(value_dims(inp))}; "
                    f"give them with --shapes {inp.name}:MIN,OPT,MAX"
                )
            profile = Profile(inp.name, tuple(dims), tuple(dims), tuple(dims))  # type: ignore[arg-type]
        _check_static(profile, dims)
        profiles.append(profile)
    return profiles


def _check_static(profile: Profile, dims: list[int | None]) -> None:
    if len(profile.min) != len(dims):
        raise UsageError(f"--shapes {profile.name}: rank {len(profile.min)}, model has {len(dims)}")
    for axis, d in enumerate(dims):
        if d and {profile.min[axis], profile.opt[axis], profile.max[axis]} != {d}:
            raise UsageError(f"--shapes {profile.name}: axis {axis} is fixed at {d} in the model")
