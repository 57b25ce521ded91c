"""Chat model specs: Kie.ai's LLM pages (GPT, Claude, Gemini, Codex) imported into ``model_specs/chat/*.yaml``.

A chat page documents one of four wire formats (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages,
Gemini ``streamGenerateContent``) at its own path. Which one, where the model id goes (body or path), which field
holds the conversation, which roles it takes, whether a system prompt is a role, whether the page documents
``stream`` and what it defaults to, and the extra options with their enums: all of that is read mechanically
from the page's OpenAPI block, so model differences live in the YAML, never in ``if`` chains.

The importer and the drift check live in :mod:`kie_async.catalogue.chat_import` (as :mod:`.spec_import` and
:mod:`.spec_drift` beside :mod:`.specs`), so a program that only chats never loads them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kie_async.catalogue.specs import Override, Provenance, SpecError
from kie_async.core.data import data_dir

WireFormat = Literal["openai-chat", "openai-responses", "anthropic-messages", "gemini"]
WIRE_FORMATS: tuple[str, ...] = WireFormat.__args__  # type: ignore[attr-defined]
CHAT_DIR = "chat"
"""The sub-folder of ``model_specs`` holding chat specs (the media registry reads only the top level)."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamSpec(_Spec):
    """Whether the page documents a ``stream`` switch, and what the service does when it is left out."""

    supported: bool
    default: bool | None = None


class ChatOption(_Spec):
    """One extra request field of a chat page (tools, reasoning effort, ...): its JSON type and the facts the
    page states. Values are passed through as given; an enum is checked before anything is sent."""

    type: Literal["string", "integer", "number", "boolean", "enum", "list", "object"]
    allowed: list[Any] | None = None
    default: Any = None
    required: bool = False
    fields: dict[str, ChatOption] | None = None


class ChatPrice(_Spec):
    """Credits per 1000 tokens, where someone found them out; absent: the unknown-price rule applies."""

    input_per_1k: float = Field(ge=0, allow_inf_nan=False)
    output_per_1k: float = Field(ge=0, allow_inf_nan=False)
    provenance: Provenance


class ChatSourcePage(_Spec):
    page: str
    url: str | None = None
    captured: str | None = None
    operation: str


class ChatSpec(_Spec):
    """Everything the SDK knows about one chat model key."""

    key: str
    label: str
    kind: Literal["chat"] = "chat"
    family: str
    aliases: list[str] = Field(default_factory=list)
    description: str | None = None
    wire_format: WireFormat
    endpoint: str = Field(description="the POST path on the market host")
    provider_models: list[str] = Field(min_length=1, description="model ids the page names; the first is sent")
    model_field: str | None = Field(description="the body field naming the model; None: the model is in the path")
    messages_field: str
    roles: list[str] = Field(min_length=1)
    content: Literal["text", "parts"] = Field(description="a message's content: a string, or a list of parts")
    system_prompt: Literal["role", "field", "fold"] = Field(
        description="role: a system message; field: a top-level `system`; fold: prepended to the first user turn"
    )
    stream: StreamSpec
    options: dict[str, ChatOption] = Field(default_factory=dict)
    price: ChatPrice | None = None
    provenance: Provenance
    verification_notes: list[str] = Field(default_factory=list)
    source_page: ChatSourcePage | None = None
    overrides: list[Override] = Field(default_factory=list)
    source_file: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatSpec:
        if self.model_field is None and "{model}" not in self.endpoint and len(self.provider_models) > 1:
            raise ValueError("a model in the path allows one provider model")
        reserved = {self.messages_field, "stream", self.model_field or ""}
        clash = sorted(reserved & set(self.options))
        if clash:
            raise ValueError(f"options {clash} are the format's own fields")
        paths = [o.path for o in self.overrides]
        if len(set(paths)) != len(paths):
            raise ValueError(f"overrides repeat a path: {paths}")
        return self

    @property
    def provider_model(self) -> str:
        return self.provider_models[0]


# -- the registry ---------------------------------------------------------------------------------------------


class ChatRegistry(BaseModel):
    model_config = ConfigDict(frozen=True)

    specs: dict[str, ChatSpec]

    def keys(self) -> list[str]:
        return list(self.specs)

    def get(self, name: str) -> ChatSpec:
        """A chat spec by key, alias or provider model id (``claude-sonnet-4-5`` finds ``claude-sonnet-4.5``)."""
        wanted = name.strip().lower()
        if wanted in self.specs:
            return self.specs[wanted]
        for spec in self.specs.values():
            if wanted in (a.lower() for a in spec.aliases) or wanted in (m.lower() for m in spec.provider_models):
                return spec
        raise KeyError(f"unknown chat model {name!r}; known: {', '.join(self.specs)}")


def load_chat_spec_file(path: Path) -> ChatSpec:
    from ruamel.yaml import YAML  # loaded with the first spec, not with the package

    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: a chat spec must be a mapping at the top level")
    data["source_file"] = str(path)
    try:
        spec = ChatSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "<top>"
        raise SpecError(f"{path}: invalid chat spec: {where}: {first['msg']}") from None
    if spec.key != path.stem:
        raise SpecError(f"{path}: key {spec.key!r} must match the file name")
    return spec


@functools.lru_cache(maxsize=4)
def _load(folders: tuple[str, ...]) -> ChatRegistry:
    files: dict[str, Path] = {}
    for folder in map(Path, folders):
        files.update((p.stem, p) for p in sorted(folder.glob("*.yaml")))
    return ChatRegistry(specs={p.stem: load_chat_spec_file(p) for p in sorted(files.values(), key=lambda p: p.name)})


def load_chat_registry(spec_dir: str | Path | None = None) -> ChatRegistry:
    """Every chat spec: the bundled ``model_specs/chat`` plus ``chat/`` under each ``$KIE_MODEL_SPECS_DIR``
    folder (a later file overrides an earlier one by name); or only ``spec_dir`` when given."""
    if spec_dir is not None:
        return _load((str(Path(spec_dir).resolve()),))
    extra = [
        str(Path(d).resolve() / CHAT_DIR) for d in os.environ.get("KIE_MODEL_SPECS_DIR", "").split(os.pathsep) if d
    ]
    return _load((str(data_dir("model_specs") / CHAT_DIR), *extra))
