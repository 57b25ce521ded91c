"""Chat specs: imported from the 15 chat pages by the importer's chat kind, and held to their pages by drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from kie_async.catalogue.chat_import import chat_drift, check_chat_spec, import_chat_page, reimport_chat
from kie_async.catalogue.chat_specs import ChatSpec, load_chat_registry
from kie_async.catalogue.specs import load_registry
from kie_async.core.data import data_dir
from kie_async.core.provider_pages import read_page

CHAT_SPECS = sorted((data_dir("model_specs") / "chat").glob("*.yaml"))


def test_fifteen_chat_specs_in_four_formats() -> None:
    registry = load_chat_registry()
    assert len(registry.specs) == 15
    formats = {spec.wire_format for spec in registry.specs.values()}
    assert formats == {"openai-chat", "openai-responses", "anthropic-messages", "gemini"}
    # the media registry reads only the top level: chat keys are not media models
    assert not set(registry.specs) & set(load_registry().specs)


def test_lookup_by_key_alias_or_provider_id() -> None:
    registry = load_chat_registry()
    assert registry.get("claude-sonnet-4-5").key == "claude-sonnet-4.5"
    assert registry.get("gpt-5.2-codex").key == "gpt-codex"
    with pytest.raises(KeyError, match="unknown chat model"):
        registry.get("gpt-9")


@pytest.mark.parametrize("path", CHAT_SPECS, ids=lambda p: p.stem)
def test_committed_chat_spec_matches_its_page(path: Path, kie_docs: Path) -> None:
    spec = load_chat_registry().specs[path.stem]
    assert check_chat_spec(spec, kie_docs) == []


def test_every_chat_page_has_a_spec(kie_docs: Path) -> None:
    pages = {
        p.relative_to(kie_docs).as_posix()
        for sub in ("chat", "claude", "codex", "gemini")
        for p in (kie_docs / "market" / sub).glob("*.md")
    }
    covered = {s.source_page.page for s in load_chat_registry().specs.values() if s.source_page}
    assert pages == covered


def test_drift_is_reported_and_an_override_excuses_it(kie_docs: Path) -> None:
    spec = load_chat_registry().get("claude-haiku-4.5")
    changed = spec.model_copy(update={"roles": ["user"]})
    drift, unused = chat_drift(changed, reimport_chat(spec, kie_docs))
    assert drift == ["roles: spec says ['user'], page says ['assistant', 'user']"] and unused == []
    excused = ChatSpec.model_validate(
        {**changed.model_dump(), "overrides": [{"path": "roles", "why": "we only ever send user turns"}]}
    )
    assert chat_drift(excused, reimport_chat(spec, kie_docs)) == ([], [])
    stale = ChatSpec.model_validate(
        {**spec.model_dump(), "overrides": [{"path": "endpoint", "why": "an excuse for nothing at all"}]}
    )
    assert chat_drift(stale, reimport_chat(spec, kie_docs))[1] == ["endpoint"]


def test_import_derives_format_model_place_and_system_handling(kie_docs: Path) -> None:
    def imported(page: str) -> ChatSpec:
        return ChatSpec.model_validate(import_chat_page(read_page(kie_docs / page, docs_root=kie_docs)).data)

    gemini_openai = imported("market/gemini/gemini-2-5-pro.md")
    assert (gemini_openai.wire_format, gemini_openai.model_field, gemini_openai.provider_model) == (
        "openai-chat",
        None,
        "gemini-2.5-pro",
    )
    assert gemini_openai.system_prompt == "role" and gemini_openai.stream.default is True
    claude = imported("market/claude/claude-opus-4-6.md")
    assert (claude.wire_format, claude.model_field, claude.system_prompt) == ("anthropic-messages", "model", "fold")
    gpt52 = imported("market/chat/gpt-5-2.md")
    assert gpt52.stream.supported is False  # the page documents no stream switch: the SDK never sends one
    assert gpt52.options["reasoning_effort"].allowed == ["low", "high"]


def test_a_media_page_is_not_a_chat_page(kie_docs: Path) -> None:
    from kie_async.catalogue.spec_import import SpecImportError

    page = next(p for p in (kie_docs / "market" / "kling").glob("*.md"))
    with pytest.raises(SpecImportError, match="no chat endpoint"):
        import_chat_page(read_page(page, docs_root=kie_docs))
