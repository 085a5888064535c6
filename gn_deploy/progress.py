"""Progress of a long command on stderr: a bar redrawn in place on a terminal, one plain line
per step elsewhere (logs, pipes, CI)."""

from __future__ import annotations

import sys
from typing import TextIO

BAR_WIDTH = 24


class Progress:
    """``total`` steps; :meth:`step` announces each one as it starts."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = self.stream.isatty()
        self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def step(self, text: str) -> None:
        self.done += 1
        count = f"{min(self.done, self.total)}/{self.total}"
        if not self.terminal:
            print(f"[{count}] {text}", file=self.stream, flush=True)
            return
        filled = BAR_WIDTH * min(self.done - 1, self.total) // self.total
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {count} {text}"
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """End the bar's line (on a terminal), so that what follows starts on its own."""
        if self.terminal and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
