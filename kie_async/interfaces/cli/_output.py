"""Output that suits where it goes: styled rich text and tables on a terminal, plain whole lines in a pipe or log.

In a pipe nothing is cut, wrapped or redrawn: a table becomes one line per row with every cell in full (a long
error or an output path stays on its line), and rich is not even imported. On a terminal, tables use rich at the
terminal's width. Each call looks at the stream it writes to, so a test's captured stdout is a pipe.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

Segment = str | tuple[str, str]
"""Plain text, or ``(text, rich style)``: the style is used on a terminal only, the text is never parsed as markup."""


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stdout) is a terminal a person is watching."""
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def plain_text(segments: Sequence[Segment]) -> str:
    return "".join(s if isinstance(s, str) else s[0] for s in segments)


def _one_line(cell: str) -> str:
    return ", ".join(part.strip() for part in str(cell).splitlines() if part.strip())


class Printer:
    """Lines and tables for stdout (or stderr), per the module docstring."""

    def __init__(self, *, stderr: bool = False) -> None:
        self.stderr = stderr

    @property
    def stream(self) -> TextIO:
        return sys.stderr if self.stderr else sys.stdout

    @property
    def rich(self) -> bool:
        return on_terminal(self.stream)

    def console(self) -> Console:
        from rich.console import Console  # only on a terminal: a pipe never pays for rich

        return Console(file=self.stream, highlight=False, soft_wrap=True)

    def line(self, *segments: Segment) -> None:
        if not self.rich:
            print(plain_text(segments), file=self.stream, flush=True)
            return
        from rich.text import Text

        self.console().print(Text.assemble(*segments))

    def table(
        self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], *, no_wrap: Sequence[str] = ()
    ) -> None:
        """A rich table at the terminal's width, or in a pipe: the title, a header and one aligned line per row."""
        if self.rich:
            from rich.table import Table

            table = Table(title=title, title_justify="left")
            for column in columns:
                table.add_column(column, overflow="fold", no_wrap=column in no_wrap)
            for row in rows:
                table.add_row(*row)
            self.console().print(table, soft_wrap=False)
            return
        cells = [[_one_line(cell) for cell in row] for row in [list(columns), *rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
        if title:
            print(title, file=self.stream)
        for row in cells:
            padded = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + row[-1:]
            print("  ".join(padded).rstrip(), file=self.stream)
        self.stream.flush()


out = Printer()
"""Standard output."""
err = Printer(stderr=True)
"""Standard error."""
