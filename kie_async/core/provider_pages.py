"""Read Kie.ai's own docs pages: the OpenAPI 3 block each page carries, as plain data.

Kie.ai publishes a request schema for almost every endpoint as a fenced ``yaml`` block inside its markdown
page. That schema is the most reliable statement of what the provider accepts, so two consumers read it
through this one module: the spec importer (``kie-async models import``), which turns it into our YAML specs,
and the emulator's schema extractor, which bundles it as JSON Schema so the emulator judges requests by the
provider's words rather than by our specs. This module only parses; it holds no beliefs about any model.

A page's capture facts (its URL, its sha256, the capture date) come from the ``manifest.json`` beside the
pages when there is one, so provenance is recorded the same way by every consumer.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

JsonSchema = dict[str, Any]
"""A JSON Schema object (OpenAPI 3.0 dialect) with every local ``$ref`` already resolved."""

_FENCED_YAML = re.compile(r"^```ya?ml[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_HTTP_METHODS = frozenset({"get", "post", "put", "patch", "delete"})


class ProviderPageError(ValueError):
    """A page (or OpenAPI file) could not be read as an OpenAPI document."""


class PageOperation(BaseModel):
    """One endpoint operation documented by a page."""

    model_config = ConfigDict(frozen=True)

    path: str
    method: str
    operation_id: str | None = None
    summary: str | None = None
    request_schema: JsonSchema | None = None
    """The ``application/json`` request body schema, ``$ref``s resolved; ``None`` for bodiless operations."""
    request_examples: tuple[Any, ...] = ()
    """Example request bodies the page gives (``example``/``examples`` on the request body)."""
    model_ids: tuple[str, ...] = ()
    """The ``model`` enum of a market ``createTask`` body: the model id(s) this page documents."""


class ProviderPage(BaseModel):
    """A docs page reduced to its facts: where it came from and the operations it documents."""

    model_config = ConfigDict(frozen=True)

    source: str
    """The page's path relative to the docs root (or the file path when read standalone)."""
    title: str | None = None
    url: str | None = None
    sha256: str | None = None
    captured: date | None = None
    operations: tuple[PageOperation, ...] = ()

    def operation(self, path: str, method: str = "post") -> PageOperation | None:
        """The operation at ``path``/``method``, if the page documents it."""
        for op in self.operations:
            if op.path == path and op.method == method.lower():
                return op
        return None


class _CaptureFacts(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str | None = None
    sha256: str | None = None
    captured: date | None = None


def read_page(path: Path, *, docs_root: Path | None = None) -> ProviderPage:
    """Parse a markdown page (or a bare OpenAPI ``.yaml``/``.json`` file) into a :class:`ProviderPage`.

    ``docs_root`` is the folder holding ``manifest.json``; by default the nearest ancestor that has one.
    """
    text = path.read_text(encoding="utf-8")
    root = docs_root if docs_root is not None else _find_docs_root(path)
    source = _relative_source(path, root)
    facts = _capture_facts(root, source) if root is not None else _CaptureFacts()
    documents = _openapi_documents(text, suffix=path.suffix.lower(), where=str(path))
    operations: list[PageOperation] = []
    for document in documents:
        operations.extend(_operations(document, where=str(path)))
    return ProviderPage(
        source=source,
        title=_title(text),
        url=facts.url,
        sha256=facts.sha256,
        captured=facts.captured,
        operations=tuple(operations),
    )


def iter_pages(docs_root: Path, *, under: str = "") -> list[ProviderPage]:
    """Every page below ``docs_root/under`` that documents at least one operation, sorted by source."""
    base = docs_root / under if under else docs_root
    pages = [read_page(p, docs_root=docs_root) for p in sorted(base.rglob("*.md"))]
    return [page for page in pages if page.operations]


def _openapi_documents(text: str, *, suffix: str, where: str) -> list[dict[str, Any]]:
    if suffix == ".json":
        return [_require_mapping(json.loads(text), where)]
    if suffix in {".yaml", ".yml"}:
        return [_require_mapping(_load_yaml(text, where), where)]
    blocks = [b for b in _FENCED_YAML.findall(text) if b.lstrip().startswith("openapi")]
    return [_require_mapping(_load_yaml(block, where), where) for block in blocks]


def _load_yaml(text: str, where: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise ProviderPageError(f"{where}: its OpenAPI block is not valid YAML: {exc}") from exc


def _require_mapping(document: Any, where: str) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
        raise ProviderPageError(f"{where}: not an OpenAPI document (no 'paths' mapping)")
    return _jsonable(document)  # type: ignore[no-any-return]


def _jsonable(value: Any) -> Any:
    """YAML may load dates and odd keys; JSON Schema consumers want plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def _operations(document: dict[str, Any], *, where: str) -> list[PageOperation]:
    found: list[PageOperation] = []
    for path, methods in document["paths"].items():
        if not isinstance(methods, dict):
            continue
        for method, op in methods.items():
            if method.lower() not in _HTTP_METHODS or not isinstance(op, dict):
                continue
            schema, examples = _request_body(document, op, where=f"{where} {method.upper()} {path}")
            found.append(
                PageOperation(
                    path=str(path),
                    method=method.lower(),
                    operation_id=_opt_str(op.get("operationId")),
                    summary=_opt_str(op.get("summary")),
                    request_schema=schema,
                    request_examples=examples,
                    model_ids=_model_ids(schema),
                )
            )
    return found


def _request_body(
    document: dict[str, Any], op: dict[str, Any], *, where: str
) -> tuple[JsonSchema | None, tuple[Any, ...]]:
    body = _resolve(document, op.get("requestBody"), where=where)
    if not isinstance(body, dict):
        return None, ()
    media = (body.get("content") or {}).get("application/json")
    if not isinstance(media, dict):
        return None, ()
    schema = _resolve(document, media.get("schema"), where=where)
    examples: list[Any] = []
    if "example" in media:
        examples.append(media["example"])
    named = media.get("examples")
    if isinstance(named, dict):
        for entry in named.values():
            if isinstance(entry, dict) and "value" in entry:
                examples.append(entry["value"])
    return (schema if isinstance(schema, dict) else None), tuple(examples)


def _resolve(document: dict[str, Any], node: Any, *, where: str, seen: tuple[str, ...] = ()) -> Any:
    """Inline every local ``#/...`` reference; a reference cycle is an error, not a hang."""
    if isinstance(node, list):
        return [_resolve(document, item, where=where, seen=seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#/"):
            raise ProviderPageError(f"{where}: only local $ref is supported, got {ref!r}")
        if ref in seen:
            raise ProviderPageError(f"{where}: $ref cycle through {ref!r}")
        target: Any = document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ProviderPageError(f"{where}: $ref {ref!r} points nowhere")
            target = target[part]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        resolved = _resolve(document, target, where=where, seen=(*seen, ref))
        return {**resolved, **_resolve(document, siblings, where=where, seen=seen)} if siblings else resolved
    return {key: _resolve(document, value, where=where, seen=seen) for key, value in node.items()}


def _model_ids(schema: JsonSchema | None) -> tuple[str, ...]:
    if not schema:
        return ()
    model = (schema.get("properties") or {}).get("model")
    if not isinstance(model, dict):
        return ()
    enum = model.get("enum")
    if isinstance(enum, list):
        return tuple(str(v) for v in enum)
    default = model.get("default")
    return (str(default),) if isinstance(default, str) else ()


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _title(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip() or None
    return None


def _find_docs_root(path: Path) -> Path | None:
    for parent in path.resolve().parents:
        if (parent / "manifest.json").is_file():
            return parent
    return None


def _relative_source(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def _capture_facts(root: Path, source: str) -> _CaptureFacts:
    manifest = _read_manifest(root)
    entry = manifest.get(source)
    if entry is None:
        return _CaptureFacts()
    return _CaptureFacts(url=entry.get("url"), sha256=entry.get("sha256"), captured=_manifest_date(root))


_MANIFEST_CACHE: dict[Path, dict[str, dict[str, str]]] = {}


def _read_manifest(root: Path) -> dict[str, dict[str, str]]:
    key = root.resolve()
    if key not in _MANIFEST_CACHE:
        raw = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        docs = raw.get("documents", []) if isinstance(raw, dict) else []
        _MANIFEST_CACHE[key] = {
            str(d["path"]): {k: str(v) for k, v in d.items()} for d in docs if isinstance(d, dict) and "path" in d
        }
        generated = raw.get("generated_at") if isinstance(raw, dict) else None
        _MANIFEST_DATES[key] = _parse_date(generated)
    return _MANIFEST_CACHE[key]


_MANIFEST_DATES: dict[Path, date | None] = {}


def _manifest_date(root: Path) -> date | None:
    return _MANIFEST_DATES.get(root.resolve())


def _parse_date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None
