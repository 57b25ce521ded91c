"""The chat pages' request schemas, bundled beside the emulator (``chat_schemas/*.json``) to judge chat requests.

As for ``createTask`` (:mod:`kie_async.emulator.schema_extract`), the emulator does not share the SDK's chat specs:
it judges each request by the page's own OpenAPI schema, reduced to fact keywords. Where a page's schema cannot
be satisfied as written, a named correction with the page's words says what was changed.
``scripts/extract_provider_schemas.py`` writes the files; ``tests/test_chat_emulator.py`` checks them against the
pages.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from kie_async.core.provider_pages import iter_pages
from kie_async.emulator.schema_extract import SCHEMA_DIALECT, Correction, slug, to_json_schema

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

CHAT_BUNDLE_DIR = Path(__file__).resolve().parent / "chat_schemas"
CHAT_FOLDERS = ("market/chat", "market/claude", "market/codex", "market/gemini")
_CHAT_PATH_ENDS = ("/chat/completions", "/responses", "/messages", ":streamGenerateContent")

_ANY_OF = (
    "a part or tool is an object whose keys are all optional, so every value matches each branch of the "
    "page's oneOf and none could pass; the page's prose means one of them (anyOf)"
)
_CORRECTIONS: dict[str, list[Correction]] = {
    "market/gemini/gemini-3-flash-v1beta.md": [
        Correction(
            name="parts-any-of", pointer="/properties/contents/items/properties/parts/items", value="anyOf", why=_ANY_OF
        ),
        Correction(name="tools-any-of", pointer="/properties/tools/items", value="anyOf", why=_ANY_OF),
    ],
}


class ChatSchema(BaseModel):
    """One bundled chat schema: the path it judges, the model ids its body names (empty: model in the path)."""

    model_config = ConfigDict(frozen=True)

    endpoint: str
    wire_format: str
    models: list[str]
    stream_default: bool | None
    stream_documented: bool
    page: dict[str, str | None]
    corrections: list[Correction] = []
    schema_: dict[str, Any]

    def file_name(self) -> str:
        return f"{slug(self.page['source'] or self.endpoint).removesuffix('.md')}.json"

    def to_json(self) -> str:
        data = self.model_dump(mode="json", exclude_none=False)
        data["schema"] = data.pop("schema_")
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def wire_format_for(path: str) -> str | None:
    if path.endswith("/chat/completions"):
        return "openai-chat"
    if path.endswith("/responses"):
        return "openai-responses"
    if path.endswith("/messages"):
        return "anthropic-messages"
    if path.endswith(":streamGenerateContent"):
        return "gemini"
    return None


def _apply(schema: dict[str, Any], fix: Correction) -> None:
    parts = fix.pointer.lstrip("/").split("/")
    node: Any = schema
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"correction {fix.name!r}: {fix.pointer} points nowhere")
        node = node[part]
    if fix.value == "anyOf" and isinstance(node, dict) and "oneOf" in node:
        node["anyOf"] = node.pop("oneOf")
    else:
        raise ValueError(f"correction {fix.name!r}: nothing to change at {fix.pointer}")


def extract_chat(docs_root: Path) -> dict[str, ChatSchema]:
    """Every chat page's bundled schema, by file name."""
    found: dict[str, ChatSchema] = {}
    for folder in CHAT_FOLDERS:
        for page in iter_pages(docs_root, under=folder):
            for op in page.operations:
                fmt = wire_format_for(op.path)
                if op.method != "post" or op.request_schema is None or fmt is None:
                    continue
                schema: dict[str, Any] = {"$schema": SCHEMA_DIALECT, **to_json_schema(op.request_schema)}
                fixes = _CORRECTIONS.get(page.source, [])
                for fix in fixes:
                    _apply(schema, fix)
                props = schema.get("properties") or {}
                model = props.get("model") or {}
                stream = props.get("stream") or {}
                bundle = ChatSchema(
                    endpoint=op.path,
                    wire_format=fmt,
                    models=[m for m in model.get("enum") or [] if isinstance(m, str)],
                    stream_default=stream.get("default") if isinstance(stream.get("default"), bool) else None,
                    stream_documented="stream" in props,
                    page={
                        "source": page.source,
                        "url": page.url,
                        "sha256": page.sha256,
                        "captured": page.captured.isoformat() if page.captured else None,
                    },
                    corrections=fixes,
                    schema_=schema,
                )
                found[bundle.file_name()] = bundle
    return dict(sorted(found.items()))


class ChatSchemaBundle:
    def __init__(self, schemas: list[ChatSchema]) -> None:
        self.schemas = schemas
        self.by_endpoint: dict[str, list[ChatSchema]] = {}
        for schema in schemas:
            self.by_endpoint.setdefault(schema.endpoint, []).append(schema)
        self._validators: dict[str, Draft202012Validator] = {}

    def endpoints(self) -> list[str]:
        return sorted(self.by_endpoint)

    def pick(self, endpoint: str, model: Any) -> ChatSchema | None:
        """The schema judging a body sent to ``endpoint``: the one whose model enum names ``model`` (else the
        endpoint's first, which then reports the unknown model)."""
        found = self.by_endpoint.get(endpoint) or []
        return next((s for s in found if model in s.models), found[0] if found else None)

    def violations(self, schema: ChatSchema, body: Any) -> list[str]:
        from jsonschema import Draft202012Validator

        name = schema.file_name()
        validator = self._validators.get(name)
        if validator is None:
            validator = self._validators[name] = Draft202012Validator(schema.schema_)
        out = []
        for error in sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path]):
            where = ".".join(str(p) for p in error.absolute_path) or "body"
            out.append(f"{where}: {error.message[:300]}")
        return out


@functools.lru_cache(maxsize=1)
def load_chat_schemas() -> ChatSchemaBundle:
    """Read the bundled files once (blocking: the routes call it in a worker thread)."""
    schemas = []
    for path in sorted(CHAT_BUNDLE_DIR.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["schema_"] = raw.pop("schema")
        schemas.append(ChatSchema.model_validate(raw))
    return ChatSchemaBundle(schemas)


def is_chat_path(path: str) -> bool:
    return path.endswith(_CHAT_PATH_ENDS)
