"""Errors that the CLI turns into one line and an exit code."""

from __future__ import annotations


class GnDeployError(Exception):
    """A failure the user can act on; the message names the input at fault."""

    exit_code = 1


class UsageError(GnDeployError):
    """A bad argument or option (exit code 2)."""

    exit_code = 2
