"""`gn-deploy build ...` from a checkout: python scripts/build_engine.py --help."""

from _entry import run

run("build")
