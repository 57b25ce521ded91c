"""A static HTML page of the runs under an artifacts root: ``kie-async artifacts gallery``.

One card per run: its thumbnail (a video's poster) from the run's own derivatives, linking to the original
file; prompt, model, credits, status and tags; the lineage between chained runs (``parent_run_ids``) as links
between cards; links to the files and ``run.json``. The page is one file with relative links, so it opens from
disk with no server and keeps working when the folder (page and root together) is moved or copied.

Every text is escaped (prompts are user content), links are relative file paths only (never a URL: a signed
download link is a credential), and a small inline script marks images that failed to load and records on
``<html>`` how many loaded (``data-images-loaded`` / ``data-images-broken``) and how many script errors
happened (``data-errors``), which is also what the test reads from a headless browser.

:func:`render_gallery` is a pure function of index entries; :func:`write_gallery` reads the index and writes
the page in worker threads.
"""

from __future__ import annotations

import html
import os
import posixpath
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel

from kie_async.artifacts.index import IndexAsset, IndexEntry
from kie_async.artifacts.layout import resolve_root
from kie_async.artifacts.manifest import ArtifactKind
from kie_async.artifacts.query import query_runs_sync
from kie_async.core.threads import run_file_io

GALLERY_FILENAME = "gallery.html"

STATUS_COLOUR = {
    "succeeded": "#1a7f37",
    "failed": "#cf222e",
    "blocked": "#9a6700",
    "over_budget": "#9a6700",
    "partial": "#bc4c00",
    "submit_uncertain": "#bc4c00",
    "incomplete": "#bc4c00",
    "cancelled": "#57606a",
}
"""One colour per status word, shared by the gallery and the notebook cards."""

CARD_CSS = """
.kie-card{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;font-size:13px;line-height:1.4;color:#1f2328;
 background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px;display:flex;gap:12px;
 align-items:flex-start;box-sizing:border-box}
.kie-card .kie-media{flex:0 0 auto;position:relative}
.kie-card .kie-media img{display:block;max-width:192px;max-height:192px;border-radius:4px;background:#f6f8fa}
.kie-card .kie-media img.kie-broken{min-width:96px;min-height:96px;outline:2px dashed #cf222e}
.kie-card .kie-noprev{width:192px;height:120px;background:#f6f8fa;color:#6e7781;display:flex;
 align-items:center;justify-content:center;border-radius:4px;font-size:12px}
.kie-card .kie-play{position:absolute;left:6px;bottom:6px;background:rgba(0,0,0,.65);color:#fff;
 border-radius:3px;padding:0 5px;font-size:11px}
.kie-card .kie-body{min-width:0;flex:1 1 auto}
.kie-card .kie-prompt{margin:4px 0;white-space:pre-wrap;overflow-wrap:anywhere}
.kie-card .kie-status{font-weight:600}
.kie-card .kie-meta{color:#57606a}
.kie-card table{border-collapse:collapse}
.kie-card td{text-align:left;vertical-align:top;padding:1px 8px 1px 0}
.kie-card td.kie-key{color:#57606a;white-space:nowrap}
.kie-card a{color:#0969da}
.kie-tag{display:inline-block;background:#ddf4ff;color:#0550ae;border-radius:10px;padding:0 7px;margin:0 3px 0 0;
 font-size:11px}
"""
"""The look of a run card, shared by the gallery page and the notebook cards (class names prefixed ``kie-``)."""

_PAGE_CSS = """
body{margin:0;background:#f6f8fa}
header{font-family:system-ui,sans-serif;padding:16px 20px 4px}
header h1{font-size:18px;margin:0 0 4px}
header p{margin:0;color:#57606a;font-size:13px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px;padding:12px 20px 24px}
.kie-card:target{outline:3px solid #0969da}
"""

_PAGE_SCRIPT = """
(function () {
  var root = document.documentElement, errors = 0;
  root.setAttribute("data-errors", "0");
  window.addEventListener("error", function (event) {
    if (event.target && event.target !== window && event.target.tagName) { return; }  // a resource, not a script
    errors += 1;
    root.setAttribute("data-errors", String(errors));
  }, true);
  window.addEventListener("load", function () {
    var images = document.images, broken = 0;
    for (var i = 0; i < images.length; i++) {
      if (!(images[i].complete && images[i].naturalWidth > 0)) {
        broken += 1;
        images[i].classList.add("kie-broken");
        images[i].title = "file missing: " + images[i].getAttribute("src");
      }
    }
    root.setAttribute("data-images-loaded", String(images.length - broken));
    root.setAttribute("data-images-broken", String(broken));
  });
})();
"""


def escape(value: object) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape(str(value), quote=True)


def status_html(status: str, state: str | None = None) -> str:
    """The status word in its colour; a request state is added only when it says something else."""
    colour = STATUS_COLOUR.get(status, "#57606a")
    extra = f' <span class="kie-meta">({escape(state)})</span>' if state and state != status else ""
    return f'<span class="kie-status" style="color:{colour}">{escape(status)}</span>{extra}'


def _href(prefix: str, relative: str | None) -> str | None:
    """A relative link from the page to a file under the root; ``None`` for anything that is not one."""
    if not relative or relative.startswith(("/", "\\")) or ".." in relative.replace("\\", "/").split("/"):
        return None
    return escape(quote(posixpath.join(prefix, relative.replace("\\", "/")), safe="/"))


def _credits(entry: IndexEntry) -> str:
    return f"{entry.credits_consumed:g}" if entry.credits_consumed is not None else "–"


def _media(asset: IndexAsset | None, prefix: str, run_id: str) -> str:
    if asset is None:
        return '<div class="kie-media"><div class="kie-noprev">no output</div></div>'
    original = _href(prefix, asset.path)
    if asset.kind is ArtifactKind.VIDEO:
        picture = _href(prefix, asset.poster or asset.thumb)
    elif asset.kind is ArtifactKind.IMAGE:
        picture = _href(prefix, asset.thumb or asset.web or asset.path)
    else:
        picture = None
    if picture is not None:
        inner = f'<img src="{picture}" alt="{escape(asset.kind.value)} of {escape(run_id)}">'
        if asset.kind is ArtifactKind.VIDEO:
            inner += '<span class="kie-play">▶ video</span>'
    else:
        inner = f'<div class="kie-noprev">{escape(asset.kind.value)}, no preview</div>'
    if original is not None:
        inner = f'<a href="{original}">{inner}</a>'
    return f'<div class="kie-media">{inner}</div>'


def _run_link(run_id: str, known: set[str]) -> str:
    if run_id in known:
        return f'<a href="#run-{escape(run_id)}">{escape(run_id)}</a>'
    return f"<code>{escape(run_id)}</code>"


def _files(entry: IndexEntry, prefix: str) -> str:
    links: list[str] = []
    for n, asset in enumerate(entry.assets):
        for label, path in (
            ("original", asset.path),
            ("web", asset.web),
            ("thumb", asset.thumb),
            ("poster", asset.poster),
        ):
            href = _href(prefix, path)
            if href is not None:
                name = label if len(entry.assets) == 1 else f"{label} {n + 1}"
                links.append(f'<a href="{href}">{escape(name)}</a>')
    for label, path in (("run.json", f"{entry.run_dir}/run.json"), ("folder", f"{entry.run_dir}/")):
        href = _href(prefix, path)
        if href is not None:
            links.append(f'<a href="{href}">{escape(label)}</a>')
    return " · ".join(links) or "–"


def card_html(entry: IndexEntry, prefix: str, known: set[str], children: Sequence[str] = ()) -> str:
    """One run as a card; ``prefix`` leads from the page to the artifacts root, ``known`` are runs on the page."""
    rows = [
        ("status", status_html(entry.status.value)),
        (
            "model",
            escape(entry.model_key)
            + (
                f' <span class="kie-meta">({escape(entry.provider_model)})</span>'
                if entry.provider_model and entry.provider_model != entry.model_key
                else ""
            ),
        ),
        ("credits", escape(_credits(entry))),
        ("created", escape(entry.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))),
    ]
    if entry.task_mode:
        rows.append(("mode", escape(entry.task_mode)))
    if entry.parent_run_ids:
        rows.append(("from", ", ".join(_run_link(p, known) for p in entry.parent_run_ids)))
    if children:
        rows.append(("used by", ", ".join(_run_link(c, known) for c in children)))
    if entry.tags:
        rows.append(("tags", "".join(f'<span class="kie-tag">{escape(t)}</span>' for t in entry.tags)))
    if entry.notes:
        rows.append(("notes", escape(entry.notes)))
    rows.append(("files", _files(entry, prefix)))
    table = "".join(f'<tr><td class="kie-key">{k}</td><td>{v}</td></tr>' for k, v in rows)
    prompt = f'<p class="kie-prompt">{escape(entry.prompt)}</p>' if entry.prompt else ""
    first = entry.assets[0] if entry.assets else None
    return (
        f'<article class="kie-card" id="run-{escape(entry.run_id)}">{_media(first, prefix, entry.run_id)}'
        f'<div class="kie-body"><div class="kie-meta"><code>{escape(entry.run_id)}</code></div>{prompt}'
        f"<table>{table}</table></div></article>"
    )


def render_gallery(
    entries: Iterable[IndexEntry],
    *,
    link_prefix: str = ".",
    title: str = "kie-async runs",
    subtitle: str = "",
    generated_at: datetime | None = None,
) -> str:
    """The whole page for ``entries`` (shown in the given order); ``link_prefix`` is the artifacts root as
    seen from the page's folder (``.`` when the page sits in the root)."""
    runs = list(entries)
    known = {e.run_id for e in runs}
    children: dict[str, list[str]] = {}
    for entry in runs:
        for parent in entry.parent_run_ids:
            children.setdefault(parent, []).append(entry.run_id)
    when = (generated_at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cards = "\n".join(card_html(e, link_prefix, known, children.get(e.run_id, ())) for e in runs)
    spent = sum(e.credits_consumed or 0.0 for e in runs)
    about = f"{len(runs)} run{'s' if len(runs) != 1 else ''} · {spent:g} credits · generated {when}"
    if subtitle:
        about += f" · {subtitle}"
    empty = "" if runs else '<p style="padding:0 20px">No runs match.</p>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CARD_CSS}{_PAGE_CSS}</style>"
        f"<script>{_PAGE_SCRIPT}</script></head>\n<body><header><h1>{escape(title)}</h1>"
        f"<p>{escape(about)}</p></header>{empty}\n<main>\n{cards}\n</main></body></html>\n"
    )


class GalleryPage(BaseModel):
    """What :func:`write_gallery` wrote."""

    path: Path
    runs: int
    images: int


def _link_prefix(root: Path, page_dir: Path) -> str:
    relative = os.path.relpath(root.absolute(), page_dir.absolute())
    return Path(relative).as_posix()


def _write_page(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(text, encoding="utf-8")
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


async def write_gallery(
    root: str | os.PathLike[str] | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    tag: str | Iterable[str] | None = None,
    since: datetime | timedelta | str | None = None,
    model: str | Iterable[str] | None = None,
    task_mode: str | Iterable[str] | None = None,
    limit: int | None = None,
) -> GalleryPage:
    """Write ``gallery.html`` of the runs under ``root`` (filtered like :func:`query_runs`, newest first) into
    ``out`` (a folder; default: the root itself). Reading the index and writing the page run in threads."""
    base = resolve_root(root)
    folder = Path(out) if out is not None else base
    entries = await run_file_io(
        query_runs_sync, base, tag=tag, since=since, model=model, task_mode=task_mode, limit=limit
    )
    filters = [f"tag {t}" for t in ([tag] if isinstance(tag, str) else list(tag or []))]
    if since is not None:
        filters.append(f"since {since}")
    text = render_gallery(
        entries,
        link_prefix=_link_prefix(base, folder),
        subtitle=" · ".join(filters),
        title=f"kie-async runs in {base.absolute().name}",
    )
    path = folder / GALLERY_FILENAME
    await run_file_io(_write_page, path, text)
    images = text.count("<img ")
    return GalleryPage(path=path.absolute(), runs=len(entries), images=images)
