"""`gn-deploy fuse ...` from a checkout: python scripts/fuse_model.py --help."""

from _entry import run

run("fuse")
