"""The agent guides (docs/agents/) are generated from the specs, prices and presets; a stale one fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from kie_async.catalogue.chat_specs import load_chat_registry
from kie_async.catalogue.guides import HEADER, render_guides, stale_guides, write_guides
from kie_async.catalogue.specs import load_registry
from kie_async.interfaces.cli import main

GUIDES = Path(__file__).resolve().parents[1] / "docs" / "agents"


def test_committed_guides_match_the_data() -> None:
    stale = stale_guides(GUIDES)
    assert not stale, f"stale agent guides {stale}: run `kie-async guides` and commit docs/agents/"


def test_every_model_is_in_its_family_guide_with_its_price_and_options() -> None:
    pages = render_guides()
    for spec in load_registry().specs.values():
        page = pages[f"{spec.family}.md"]
        assert f"(`{spec.key}`)" in page
        for option in spec.options:
            assert f"| `{option}` |" in page
    assert "| mode = 720p | 20 | 0.1 |" in pages["kling.md"]  # kling 3.0 motion control, 720p, per second
    assert "kling_3_0_i2v_first_frame_v1" in pages["kling.md"]  # the seed toolkit's preset key is listed
    assert "{{" not in "".join(pages.values())


def test_every_chat_model_is_in_the_chat_guide_with_its_options_and_price_basis() -> None:
    pages = render_guides()
    page = pages["chat.md"]
    for spec in load_chat_registry().specs.values():
        section = page.split(f"(`{spec.key}`)", 1)[1].split("\n## ", 1)[0]
        assert f"wire format {spec.wire_format}" in section and f"`POST {spec.endpoint}`" in section
        assert "price basis: tokens; no token price is published" in section
        assert f"kie-async chat --offline --model {spec.key}" in section
        for option in spec.options:
            assert f"| `{option}` |" in section
    assert "| `reasoning_effort` | enum | low, high | high |" in page  # gpt-5.2's enum and default
    assert "[Chat models](chat.md) (kind chat): `claude-haiku-4.5`" in pages["README.md"]


def test_regenerating_rewrites_a_stale_guide_and_drops_gone_families(tmp_path: Path) -> None:
    write_guides(tmp_path)
    assert stale_guides(tmp_path) == []
    (tmp_path / "kling.md").write_text(HEADER + "\nold\n", encoding="utf-8")
    (tmp_path / "gone-family.md").write_text(HEADER + "\n", encoding="utf-8")
    (tmp_path / "handwritten.md").write_text("# mine\n", encoding="utf-8")
    assert stale_guides(tmp_path) == ["gone-family.md", "kling.md"]
    assert main(["guides", "--out", str(tmp_path), "--check"]) == 1
    assert main(["guides", "--out", str(tmp_path)]) == 0
    assert main(["guides", "--out", str(tmp_path), "--check"]) == 0
    assert not (tmp_path / "gone-family.md").exists() and (tmp_path / "handwritten.md").exists()


def test_user_spec_folders_do_not_leak_into_committed_guides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIE_PROMPT_PRESETS_DIR", str(tmp_path))
    (tmp_path / "mine_v1.md").write_text(
        "---\nkey: mine_v1\nversion: 1\nmodel_keys: [nano-banana-2]\n"
        "input_patterns: [prompt_only]\n---\n- secret house rule\n",
        encoding="utf-8",
    )
    assert "secret house rule" not in render_guides()["nano-banana.md"]
