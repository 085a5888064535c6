"""`gn-deploy export ...` from a checkout: python scripts/export_model.py --help."""

from _entry import run

run("export")
