"""Run results as HTML: the card of one run and the table of a batch, what Jupyter shows via ``_repr_html_``.

A notebook shows the last expression of a cell with ``_repr_html_``. For a run that is its thumbnail (or a
video's poster) inline, its status, model, credits and run folder. The picture comes from the run folder's
own derivatives (``run.json`` names them), is inlined only when it is a small raster image whose first bytes
say so (at most :data:`MAX_INLINE_IMAGE_BYTES`; never SVG, which can carry script), and every text is
escaped. URLs are not shown: a signed link would put a credential in the notebook file.

The renderers take any object with a run result's fields (:class:`RunView`), so :mod:`.run_models` imports this
module and not the other way round. They read a few small files synchronously: Jupyter calls ``_repr_html_``
synchronously, outside any SDK coroutine.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from kie_async.artifacts.manifest import RunManifest
from kie_async.core.media_sniff import HEAD_BYTES, sniff_head
from kie_async.ledger.request_state import RequestState


class RunView(Protocol):
    """What the HTML needs of a run: a :class:`~kie_async.pipeline.run_models.RunResult` has all of it."""

    @property
    def status(self) -> str: ...
    @property
    def state(self) -> RequestState: ...
    @property
    def model_key(self) -> str: ...
    @property
    def task_id(self) -> str | None: ...
    @property
    def run_dir(self) -> str | None: ...
    @property
    def outputs(self) -> Sequence[object]: ...
    @property
    def credits_charged(self) -> float | None: ...
    @property
    def credits_estimated(self) -> float | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def total_seconds(self) -> float: ...


MAX_INLINE_IMAGE_BYTES = 256 * 1024
"""A thumbnail is ~10-40 KB; anything far larger is not inlined (the notebook file would balloon)."""
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_TABLE_ROWS = 200
"""A batch table shows this many rows (thumbnails included), then a count of the rest."""
_RASTER = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}
_STATUS_COLOUR = {
    "succeeded": "#1a7f37",
    "failed": "#cf222e",
    "blocked": "#9a6700",
    "over_budget": "#9a6700",
    "submit_uncertain": "#bc4c00",
    "incomplete": "#bc4c00",
}
_STYLE = "font-family:system-ui,sans-serif;font-size:13px;"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _credits(result: RunView) -> str:
    charged, estimated = result.credits_charged, result.credits_estimated
    if charged is not None:
        return f"{charged:g}"
    if estimated is not None:
        return f"~{estimated:g} (estimate)"
    return "–"


def preview_data_uri(result: RunView) -> str | None:
    """The run's thumbnail (or video poster) as a ``data:`` URI, or None when there is none small enough."""
    if not result.run_dir:
        return None
    run_dir = Path(result.run_dir)
    try:
        manifest_path = run_dir / "run.json"
        if not manifest_path.is_file() or manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            return None  # a FIFO or a device would block the read (and the kernel) for ever
        manifest = RunManifest.model_validate_json(manifest_path.read_bytes())
    except (OSError, ValueError, ValidationError):
        return None
    root = run_dir.resolve()
    for output in manifest.outputs:
        for name in ("thumb", "poster"):
            derivative = output.derivative(name)
            if derivative is None:
                continue
            uri = _inline(root, derivative.path)
            if uri is not None:
                return uri
    return None


def _inline(root: Path, relative: str) -> str | None:
    try:
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file() or path.stat().st_size > MAX_INLINE_IMAGE_BYTES:
            return None
        data = path.read_bytes()
    except (OSError, ValueError):
        return None
    mime = _RASTER.get(sniff_head(data[:HEAD_BYTES]).format or "")
    if mime is None or len(data) > MAX_INLINE_IMAGE_BYTES:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(uri: str | None, edge: int) -> str:
    if uri is None:
        return f'<div style="width:{edge}px;height:{edge}px;background:#eee;color:#888;display:flex;' \
               f'align-items:center;justify-content:center;font-size:11px">no preview</div>'
    return f'<img src="{uri}" alt="preview" style="max-width:{edge}px;max-height:{edge}px;border-radius:4px"/>'


def _status(result: RunView) -> str:
    colour = _STATUS_COLOUR.get(result.status, "#57606a")
    state = f'<span style="color:#57606a">({_e(result.state.value)})</span>'
    return f'<b style="color:{colour}">{_e(result.status)}</b> {state}'


def run_result_html(result: RunView) -> str:
    """One run as an HTML card: preview, status, model, credits, task id, run folder, and the error if any."""
    rows = [
        ("status", _status(result)),
        ("model", _e(result.model_key)),
        ("credits", _e(_credits(result))),
        ("task", _e(result.task_id or "–")),
        ("run folder", f"<code>{_e(result.run_dir)}</code>" if result.run_dir else "–"),
        ("outputs", _e(len(result.outputs))),
        ("seconds", _e(f"{result.total_seconds:.2f}")),
    ]
    if result.error:
        rows.append(("error", _e(_short(result.error))))
    table = "".join(
        f'<tr><td style="text-align:left;color:#57606a;padding:1px 8px 1px 0">{k}</td>'
        f'<td style="text-align:left">{v}</td></tr>'
        for k, v in rows
    )
    return (
        f'<div style="{_STYLE}display:flex;gap:12px;align-items:flex-start">'
        f"{_img(preview_data_uri(result), 192)}<table>{table}</table></div>"
    )


def run_results_html(results: Sequence[RunView]) -> str:
    """A batch as an HTML table: a totals line, then one row per request with a small preview."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    spent = sum(r.credits_charged or 0.0 for r in results)
    summary = " · ".join(f"{_e(k)} {v}" for k, v in sorted(counts.items())) or "empty"
    columns = ("", "#", "status", "model", "credits", "run folder")
    head = "".join(f'<th style="text-align:left">{h}</th>' for h in columns)
    rows = []
    for index, result in enumerate(results[:MAX_TABLE_ROWS]):
        if result.run_dir:
            folder = f"<code>{_e(Path(result.run_dir).name)}</code>"
        else:
            folder = _e(_short(result.error or "–", 120))
        rows.append(
            f"<tr><td>{_img(preview_data_uri(result), 64)}</td><td>{index}</td><td>{_status(result)}</td>"
            f"<td>{_e(result.model_key)}</td><td>{_e(_credits(result))}</td>"
            f"<td style='text-align:left'>{folder}</td></tr>"
        )
    more = len(results) - MAX_TABLE_ROWS
    tail = f"<div>… and {more} more</div>" if more > 0 else ""
    return (
        f'<div style="{_STYLE}"><div><b>{len(results)} runs</b>: {summary} · credits {spent:g}</div>'
        f"<table><tr>{head}</tr>{''.join(rows)}</table>{tail}</div>"
    )
