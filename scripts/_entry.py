"""Shared by the scripts here: run one `gn-deploy` subcommand from a checkout, uninstalled."""

import sys
from pathlib import Path


def run(command: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gn_deploy.cli import main

    sys.exit(main([command, *sys.argv[1:]]))
