"""Launch gn-deploy's GN kernel on benchmark shapes for Nsight Compute (`gpu_check.sh` runs it
under `ncu`): a few warm-up calls, then the calls to profile, each on fresh inputs.

    python3 scripts/profile_kernels.py [--calls N] SHAPE[:LAYOUT][@PATH] ...

SHAPE is a name from `gn-deploy bench kernels` (docs/design.md, "Benchmark shapes"), LAYOUT
NCHW (default) or NHWC, PATH a forced launch path (onchip, cluster, stream, tiled, registers;
default: the planner's choice).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    import torch

    from gn_deploy.kernel_bench import FORCED_PATHS, KERNEL_SHAPES
    from gn_deploy.kernels import LaunchPath, group_norm

    shapes = {name: rest for name, *rest in KERNEL_SHAPES}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="+", metavar="SHAPE[:LAYOUT][@PATH]")
    parser.add_argument("--calls", type=int, default=3, help="calls per shape (default 3)")
    args = parser.parse_args()
    paths = {p.lower(): LaunchPath[p] for p in FORCED_PATHS} | {"": LaunchPath.AUTO}
    for item in args.shapes:
        spec, _, path = item.partition("@")
        name, _, layout = spec.partition(":")
        if name not in shapes or layout not in ("", "NCHW", "NHWC") or path not in paths:
            parser.error(
                f"{item}: choose from {', '.join(shapes)}, optionally :NCHW or :NHWC, "
                f"optionally @{' or @'.join(p for p in paths if p)}"
            )
        n, c, spatial, groups, dtype = shapes[name]
        dims = (n, c, *spatial) if layout != "NHWC" else (n, *spatial, c)
        kind = getattr(torch, dtype)
        gamma = torch.randn(c, device="cuda")
        beta = torch.randn(c, device="cuda")
        for _ in range(args.calls):
            x = torch.randn(dims, device="cuda", dtype=kind)
            group_norm(x, groups, gamma, beta, silu=True, layout=layout or "NCHW", path=paths[path])
        torch.cuda.synchronize()
        print(f"{item}: {args.calls} calls of {list(dims)} {dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
