"""Parameters real exporters sometimes get wrong: say so, and keep the model's numerics."""

from __future__ import annotations

import math

import numpy as np

from gn_deploy.fusion.site import GroupNormSite

# Exporters write 1e-6 .. 1e-3; anything past this is almost surely an uninitialised value.
LARGEST_PLAUSIBLE_EPSILON = 1.0


def suspicious_parameters(site: GroupNormSite) -> list[str]:
    """One line per suspicious parameter of ``site``, naming the value."""
    found = []
    eps = site.epsilon
    if math.isnan(eps):
        found.append("epsilon is NaN")
    elif eps < 0:
        found.append(f"epsilon is negative ({eps:g})")
    elif eps > LARGEST_PLAUSIBLE_EPSILON:
        found.append(f"epsilon is {eps:g}, far above the usual 1e-6..1e-3 (uninitialised?)")
    for name, values in (("gamma", site.gamma), ("beta", site.beta)):
        if values is not None and not np.all(np.isfinite(values)):
            bad = int(np.sum(~np.isfinite(values)))
            found.append(f"{name} has {bad} non-finite entries of {values.size}")
    return found
