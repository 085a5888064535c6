"""`gn-deploy validate ...` from a checkout: python scripts/validate_parity.py --help."""

from _entry import run

run("validate")
