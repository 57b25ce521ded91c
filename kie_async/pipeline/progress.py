"""``run_many(..., progress=True)``: one progress bar that works in a terminal and in a Jupyter notebook.

In a notebook the bar is an HTML ``<progress>`` element redrawn in place (``display(..., display_id=True)``),
which needs neither ipywidgets nor a front-end extension; in a terminal it is a rich bar on stderr. Notebook
redraws are throttled (each one is a message to the front end), except the last, which always shows.
"""

from __future__ import annotations

import html
import importlib
import sys
import time
from typing import Any

from rich.console import Console
from rich.errors import LiveError
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from kie_async.pipeline.batch_progress import BatchProgress

_REDRAW_SECONDS = 0.25


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), where stderr is not a terminal."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def describe(p: BatchProgress) -> str:
    return (
        f"submitted {p.submitted} · generating {p.generating} · done {p.done} · failed {p.failed}"
        f" · skipped {p.skipped} · credits {p.credits_spent:g}"
    )


class BatchProgressBar:
    """An ``on_progress`` callback that draws a bar; call :meth:`close` when the batch ends."""

    def __init__(self, total: int, *, notebook: bool | None = None) -> None:
        self.total = total
        self.notebook = in_notebook() if notebook is None else notebook
        self._last_draw = 0.0
        self._last: BatchProgress | None = None
        self._handle: Any = None
        self._rich: Progress | None = None
        if self.notebook:
            shown: Any = importlib.import_module("IPython.display")  # only ever reached inside IPython
            self._html: Any = shown.HTML
            self._handle = shown.display(self._html(self._render(None)), display_id=True)
        else:
            self._rich = Progress(
                TextColumn("[bold]batch"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar = self._rich.add_task("batch", total=total, detail="")
            try:
                self._rich.start()
            except LiveError:  # another bar (another batch in this process) holds the terminal: draw nothing
                self._rich = None

    def _render(self, p: BatchProgress | None) -> str:
        finished = p.finished if p is not None else 0
        detail = html.escape(describe(p)) if p is not None else "queued"
        return (
            f'<div style="font-family:system-ui,sans-serif;font-size:13px">'
            f'<progress value="{finished}" max="{max(self.total, 1)}" style="width:240px"></progress> '
            f"<b>{finished}/{self.total}</b> · {detail}</div>"
        )

    def __call__(self, p: BatchProgress) -> None:
        self._last = p
        if self._rich is not None:
            self._rich.update(self._bar, completed=p.finished, detail=describe(p))
            return
        if self._handle is None:
            return
        now = time.monotonic()
        if now - self._last_draw >= _REDRAW_SECONDS or p.finished == self.total:
            self._last_draw = now
            self._handle.update(self._html(self._render(p)))

    def close(self) -> None:
        """Draw the final state and release the terminal."""
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
        elif self._handle is not None and self._last is not None:
            self._handle.update(self._html(self._render(self._last)))
