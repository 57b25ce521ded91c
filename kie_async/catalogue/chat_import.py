"""The chat kind of the importer, and its drift check: a chat page's OpenAPI block into a chat spec.

A chat page documents one of four wire formats at its own path; which one, where the model id goes, which field
holds the conversation, the roles, whether a system prompt is a role, the ``stream`` switch and the extra options
are all read mechanically here (no per-model knowledge). :func:`check_chat_spec` re-imports a committed spec's
page and compares the facts (:func:`chat_facts`); a committed spec may differ only where it lists an override.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from kie_async.catalogue.chat_specs import ChatOption, ChatSpec, WireFormat
from kie_async.catalogue.spec_import import ImportedSpec, SpecImportError, model_key_for
from kie_async.core.provider_pages import JsonSchema, PageOperation, ProviderPage, read_page

_MESSAGES_FIELD: dict[str, str] = {
    "openai-chat": "messages",
    "openai-responses": "input",
    "anthropic-messages": "messages",
    "gemini": "contents",
}
_PATH_MODEL = re.compile(r"^/(?P<model>[^/]+)/v1/chat/completions$")
_GEMINI_MODEL = re.compile(r"/models/(?P<model>[^/:]+):[A-Za-z]+$")


# -- import ---------------------------------------------------------------------------------------------------


def wire_format_of(path: str) -> WireFormat | None:
    """The chat wire format a documented path speaks, or ``None`` for a non-chat path."""
    if path.endswith("/chat/completions"):
        return "openai-chat"
    if path.endswith("/responses"):
        return "openai-responses"
    if path.endswith("/messages"):
        return "anthropic-messages"
    if "GenerateContent" in path:
        return "gemini"
    return None


def chat_operation(page: ProviderPage) -> PageOperation | None:
    """The page's chat operation (a POST at one of the four formats' paths), if it documents one."""
    for op in page.operations:
        if op.method == "post" and op.request_schema and wire_format_of(op.path) is not None:
            return op
    return None


def _roles(messages: JsonSchema) -> list[str]:
    items = messages.get("items") if isinstance(messages.get("items"), dict) else {}
    role = ((items or {}).get("properties") or {}).get("role") or {}
    return [str(r) for r in role.get("enum") or [] if isinstance(r, str)]


def _content_shape(messages: JsonSchema) -> Literal["text", "parts"]:
    items = messages.get("items") if isinstance(messages.get("items"), dict) else {}
    props = (items or {}).get("properties") or {}
    content = props.get("content") or props.get("parts") or {}
    if content.get("type") == "array" or "parts" in props:
        return "parts"
    return "text"


def _chat_field(prop: JsonSchema, required: bool, notes: list[str], name: str) -> dict[str, Any]:
    """One option as our FieldSpec data: type, enum, default, required, and sub-fields of an object."""
    out: dict[str, Any] = {}
    kind = prop.get("type")
    enum = [v for v in prop.get("enum") or [] if not isinstance(v, dict)]
    if len(enum) != len(prop.get("enum") or []):
        notes.append(f"{name}: the enum holds entries that are not values; left out")
    if enum and kind == "string":
        out["type"], out["allowed"] = "enum", enum
    elif kind in ("string", "integer", "number", "boolean"):
        out["type"] = kind
    elif kind == "array":
        out["type"] = "list"
    elif kind == "object":
        out["type"] = "object"
    else:
        out["type"] = "object" if "oneOf" in prop or "anyOf" in prop else "string"
    if required:
        out["required"] = True
    if prop.get("default") is not None:
        out["default"] = prop["default"]
    subs = prop.get("properties")
    if out["type"] == "object" and isinstance(subs, dict) and subs:
        sub_required = {str(r) for r in prop.get("required") or []}
        out["fields"] = {
            str(k): _chat_field(v if isinstance(v, dict) else {}, str(k) in sub_required, notes, f"{name}.{k}")
            for k, v in subs.items()
        }
    return out


def import_chat_page(page: ProviderPage, *, family: str | None = None, key: str | None = None) -> ImportedSpec:
    """Derive a chat spec from ``page``'s chat operation (the importer's chat kind)."""
    op, fmt, schema = _chat_request(page)
    notes: list[str] = []
    todos: list[str] = []
    props, required = _request_fields(schema, notes)
    messages_field, messages = _messages_schema(page, fmt, props)
    model_field, models = _provider_models(page, op.path, props, notes, todos)
    roles = _roles(messages)
    if not roles:
        raise SpecImportError(f"{page.source}: the {messages_field!r} items name no roles")
    options = {
        name: _chat_field(prop, name in required, notes, name)
        for name, prop in props.items()
        if name not in {messages_field, "stream", model_field}
    }
    stem = page.source.rsplit("/", 1)[-1].removesuffix(".md")
    model_key = key or model_key_for(stem)
    data: dict[str, Any] = {
        "key": model_key,
        "label": page.title or model_key,
        "kind": "chat",
        "family": family or page.source.split("/")[-2] if "/" in page.source else (family or "chat"),
        "wire_format": fmt,
        "endpoint": op.path,
        "provider_models": models,
        "model_field": model_field,
        "messages_field": messages_field,
        "roles": roles,
        "content": _content_shape(messages),
        "system_prompt": _system_prompt(roles, props),
        "stream": _stream(props),
    }
    if options:
        data["options"] = options
    data.update(_page_record(page, op.path, notes))
    return ImportedSpec(key=model_key, data=data, todos=todos, page_notes=notes)


def _chat_request(page: ProviderPage) -> tuple[PageOperation, WireFormat, JsonSchema]:
    """The page's chat operation, its wire format and its request schema (an import error if there is none)."""
    op = chat_operation(page)
    if op is None or op.request_schema is None:
        raise SpecImportError(f"{page.source}: documents no chat endpoint with a request schema")
    fmt = wire_format_of(op.path)
    assert fmt is not None
    return op, fmt, op.request_schema


def _request_fields(schema: JsonSchema, notes: list[str]) -> tuple[dict[str, JsonSchema], set[str]]:
    """The request's properties (a non-object one read as empty) and its required names; a repeat is a page note."""
    props: dict[str, JsonSchema] = {
        str(k): v if isinstance(v, dict) else {} for k, v in (schema.get("properties") or {}).items()
    }
    required_list = [str(r) for r in schema.get("required") or []]
    if len(set(required_list)) != len(required_list):
        notes.append(f"the required list repeats names: {required_list}")
    return props, set(required_list)


def _messages_schema(page: ProviderPage, fmt: WireFormat, props: dict[str, JsonSchema]) -> tuple[str, JsonSchema]:
    """The field holding the conversation and the schema of its list (Responses also takes a bare string)."""
    messages_field = _MESSAGES_FIELD[fmt]
    messages = props.get(messages_field, {})
    if not messages:
        raise SpecImportError(f"{page.source}: the {fmt} schema has no {messages_field!r} field")
    if messages.get("oneOf"):  # Responses: a string or a list of messages
        messages = next((m for m in messages["oneOf"] if isinstance(m, dict) and m.get("type") == "array"), {})
    return messages_field, messages


def _provider_models(
    page: ProviderPage, path: str, props: dict[str, JsonSchema], notes: list[str], todos: list[str]
) -> tuple[str | None, list[str]]:
    """Where the model id goes (a ``model`` field, or ``None`` when it is in the path) and the ids documented."""
    model_field: str | None = "model" if "model" in props else None
    if model_field:
        raw = props["model"].get("enum") or []
        models = [str(m) for m in raw if isinstance(m, str)]
        if len(models) != len(raw):
            notes.append("the model enum holds entries that are not model ids; left out")
        if len(models) > 1:
            todos.append(f"the page lists several model ids {models}; the spec sends {models[0]} unless asked")
    else:
        match = _PATH_MODEL.match(path) or _GEMINI_MODEL.search(path)
        models = [match["model"]] if match else []
    if not models:
        raise SpecImportError(f"{page.source}: names no model id in its schema or path")
    return model_field, models


def _system_prompt(roles: list[str], props: dict[str, JsonSchema]) -> Literal["role", "field", "fold"]:
    """How a system prompt goes: a system message, a top-level ``system``, or prepended to the first user turn."""
    return "role" if {"system", "developer"} & set(roles) else "field" if "system" in props else "fold"


def _stream(props: dict[str, JsonSchema]) -> dict[str, Any]:
    """Whether the request documents a ``stream`` switch, and its default when that is a boolean."""
    stream_prop = props.get("stream")
    stream: dict[str, Any] = {"supported": stream_prop is not None}
    if stream_prop is not None and isinstance(stream_prop.get("default"), bool):
        stream["default"] = stream_prop["default"]
    return stream


def _page_record(page: ProviderPage, path: str, notes: list[str]) -> dict[str, Any]:
    """Where the spec came from: provenance, the verification notes (page defects included) and the source page."""
    captured = page.captured.isoformat() if page.captured else "unknown"
    return {
        "provenance": {
            "source": f"{page.url or page.source} (OpenAPI block, imported)",
            "checked_on": captured,
            "status": "doc",
        },
        "verification_notes": [
            f"Imported from the provider's OpenAPI block ({page.source}, captured {captured}); nothing here was "
            f"checked against the live API by us. No token price is documented: the unknown-price rule applies and "
            f"the answer's credits_consumed settles a budget."
        ]
        + [f"Page defect: {n}" for n in notes],
        "source_page": {"page": page.source, "url": page.url, "captured": captured, "operation": path},
    }


# -- drift ----------------------------------------------------------------------------------------------------


def _option_facts(prefix: str, spec: ChatOption, out: dict[str, Any]) -> None:
    out[f"{prefix}.type"] = spec.type
    out[f"{prefix}.required"] = spec.required
    if spec.default is not None:
        out[f"{prefix}.default"] = spec.default
    if spec.allowed is not None:
        out[f"{prefix}.allowed"] = sorted(str(v) for v in spec.allowed)
    for name, sub in (spec.fields or {}).items():
        _option_facts(f"{prefix}.fields.{name}", sub, out)


def chat_facts(spec: ChatSpec) -> dict[str, Any]:
    """The page-derivable facts of a chat spec as ``path -> value``."""
    out: dict[str, Any] = {
        "wire_format": spec.wire_format,
        "endpoint": spec.endpoint,
        "provider_models": sorted(spec.provider_models),
        "model_field": spec.model_field,
        "messages_field": spec.messages_field,
        "roles": sorted(spec.roles),
        "content": spec.content,
        "system_prompt": spec.system_prompt,
        "stream.supported": spec.stream.supported,
        "stream.default": spec.stream.default,
    }
    for name, opt in spec.options.items():
        _option_facts(f"options.{name}", opt, out)
    return out


def _overridden(path: str, overrides: set[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in overrides for i in range(1, len(parts) + 1))


def reimport_chat(spec: ChatSpec, docs_root: Path) -> ChatSpec:
    if spec.source_page is None:
        raise ValueError(f"{spec.key}: has no source_page to re-import")
    page = read_page(docs_root / spec.source_page.page, docs_root=docs_root)
    return ChatSpec.model_validate(import_chat_page(page, family=spec.family, key=spec.key).data)


def chat_drift(committed: ChatSpec, imported: ChatSpec) -> tuple[list[str], list[str]]:
    """(facts that differ and are not overridden, overrides that excuse nothing)."""
    mine, theirs = chat_facts(committed), chat_facts(imported)
    differing = [p for p in sorted(set(mine) | set(theirs)) if mine.get(p) != theirs.get(p)]
    overrides = {o.path for o in committed.overrides}
    drift = [
        f"{p}: spec says {mine.get(p)!r}, page says {theirs.get(p)!r}"
        for p in differing
        if not _overridden(p, overrides)
    ]
    unused = [o for o in sorted(overrides) if not any(_overridden(p, {o}) for p in differing)]
    return drift, unused


def check_chat_spec(spec: ChatSpec, docs_root: Path) -> list[str]:
    """Drift between ``spec`` and its page, plus stale overrides (empty when they agree)."""
    drift, unused = chat_drift(spec, reimport_chat(spec, docs_root))
    return drift + [f"override {o!r} no longer excuses any difference" for o in unused]
