"""Time every launch path of gn-deploy's GN kernels, candidates included, forced on every
benchmark shape and layout (`gpu_check.sh` runs it; needs a CUDA GPU).

    python3 scripts/bench_paths.py [--repeat N] [-o FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from gn_deploy.errors import GnDeployError
    from gn_deploy.kernel_bench import bench_paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=60, help="timed calls per path (default 60)")
    parser.add_argument("-o", "--output", type=Path, help="also write the table here")
    args = parser.parse_args()
    try:
        text = bench_paths(args.repeat)
    except GnDeployError as exc:
        print(f"bench_paths: error: {exc}", file=sys.stderr)
        return 1
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
