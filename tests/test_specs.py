"""Model specs: every key loads, facts match, bad specs fail with file + line, and a new model is one YAML file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kie_async.catalogue.payload import build_submission_payload, check_wire_payload
from kie_async.catalogue.presets import load_presets
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import SpecError, clear_registry_cache, load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.core.data import data_dir

EXPECTED_KEYS = {
    "nano-banana-2",
    "nano-banana-pro",
    "seedance-2.0",
    "seedance-2.0-fast",
    "seedance-2.0-mini",
    "kling-2.6-t2v",
    "kling-2.6-i2v",
    "kling-2.6-motion",
    "kling-3.0-t2v",
    "kling-3.0-i2v",
    "kling-3.0-motion",
    "veo-3.1",
    "veo-3.1-fast",
    "runway-gen",
    "runway-aleph",
    "suno-music",
    "gpt4o-image",
    "flux-kontext-pro",
    "flux-kontext-max",
}

# From shared/kie-api-facts.md §5.
PROVIDER_IDS = {
    "nano-banana-2": {"nano-banana-2"},
    "nano-banana-pro": {"nano-banana-pro"},
    "seedance-2.0": {"bytedance/seedance-2"},
    "seedance-2.0-fast": {"bytedance/seedance-2-fast"},
    "seedance-2.0-mini": {"bytedance/seedance-2-mini"},
    "kling-2.6-t2v": {"kling-2.6/text-to-video"},
    "kling-2.6-i2v": {"kling-2.6/image-to-video"},
    "kling-2.6-motion": {"kling-2.6/motion-control"},
    "kling-3.0-t2v": {"kling-3.0/video"},
    "kling-3.0-i2v": {"kling-3.0/video"},
    "kling-3.0-motion": {"kling-3.0/motion-control"},
    # Separate APIs (shared/kie-docs/<api>/): the body's model value, or the SDK's name where none is sent.
    "veo-3.1": {"veo3"},
    "veo-3.1-fast": {"veo3_fast"},
    "runway-gen": {"runway"},
    "runway-aleph": {"runway-aleph"},
    "suno-music": {"suno-music"},
    "gpt4o-image": {"gpt4o-image"},
    "flux-kontext-pro": {"flux-kontext-pro"},
    "flux-kontext-max": {"flux-kontext-max"},
}


def test_every_model_key_has_a_spec_that_loads() -> None:
    """The 11 hand-written keys keep working; every other spec was imported from a provider page, which is its
    provenance (each fact in it is re-checked against that page by tests/test_spec_import.py)."""
    registry = load_registry()
    assert set(registry.model_keys()) >= EXPECTED_KEYS
    for key in set(registry.model_keys()) - EXPECTED_KEYS:
        spec = registry.get(key)
        if spec.source_page is None:  # a separate API's spec, written by hand from its page (not importable)
            assert not spec.transport.is_market and spec.audit_page is not None, key
            continue
        assert spec.source_page.url, key
        assert spec.provenance.checked_on == spec.source_page.captured, key


@pytest.mark.parametrize("key", sorted(EXPECTED_KEYS))
def test_provider_model_ids_match_the_facts_file(key: str) -> None:
    assert set(load_registry().get(key).provider_models) == PROVIDER_IDS[key]


@pytest.mark.parametrize("key", sorted(EXPECTED_KEYS))
def test_every_field_records_provenance_and_the_spec_has_notes(key: str) -> None:
    spec = load_registry().get(key)
    assert spec.verification_notes
    assert spec.prompt.provenance is not None
    for name, opt in spec.options.items():
        assert opt.provenance is not None, name
        assert opt.provenance.checked_on
    for mode in spec.task_modes:
        for slot in mode.slots:
            assert slot.provenance is not None, slot.name


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("kling-3.0-motion", "UNCONFIRMED"),
        ("seedance-2.0-mini", "UNCONFIRMED"),
        ("nano-banana-2", "UNCONFIRMED"),
        ("kling-3.0-t2v", "UNCONFIRMED"),
        ("seedance-2.0", "UNCONFIRMED"),
    ],
)
def test_unconfirmed_facts_are_recorded_in_verification_notes(key: str, needle: str) -> None:
    assert any(needle in note for note in load_registry().get(key).verification_notes)


def test_kling_durations_are_strings_on_the_wire_and_seedance_an_integer() -> None:
    registry = load_registry()
    for key in ("kling-2.6-t2v", "kling-2.6-i2v", "kling-3.0-t2v", "kling-3.0-i2v"):
        assert registry.get(key).options["duration"].wire == "string"
    for key in ("seedance-2.0", "seedance-2.0-fast", "seedance-2.0-mini"):
        opt = registry.get(key).options["duration"]
        assert (opt.wire, opt.min, opt.max, opt.default) == ("native", 4, 15, 5)


def test_unconfirmed_fields_are_flagged() -> None:
    registry = load_registry()
    assert registry.get("nano-banana-2").options["google_search"].unconfirmed
    mode = registry.get("kling-3.0-motion").options["mode"]
    assert mode.provenance is not None and mode.provenance.status == "unconfirmed"


def test_aliases_resolve_to_candidates() -> None:
    registry = load_registry()
    assert [s.key for s in registry.candidates("kling-3.0")] == ["kling-3.0-i2v", "kling-3.0-t2v"]
    assert [s.key for s in registry.candidates("seedance")] == ["seedance-2.0"]
    assert [s.key for s in registry.candidates("Kling-2.6-T2V")] == ["kling-2.6-t2v"]
    assert registry.candidates("no-such-model") == []


def test_registry_is_cached() -> None:
    assert load_registry() is load_registry()


def test_default_presets_named_by_specs_exist_and_fit() -> None:
    presets = load_presets()
    for spec in load_registry().specs.values():
        patterns = {m.input_pattern for m in spec.task_modes}
        for pattern, key in spec.default_presets.items():
            assert pattern in patterns, (spec.key, pattern)
            assert presets[key].fits(spec.key, pattern), (spec.key, key)


def _copy_specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    shutil.copytree(data_dir("model_specs"), folder)
    return folder


def test_bad_field_type_fails_with_file_and_line(tmp_path: Path) -> None:
    folder = _copy_specs(tmp_path)
    path = folder / "kling-2.6-t2v.yaml"
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip() == "type: integer")
    lines[index] = lines[index].replace("integer", "integr")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError) as info:
        load_registry(folder)
    message = str(info.value)
    assert f"{path}:{index + 1}:" in message
    assert "options.duration.type" in message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    folder = _copy_specs(tmp_path)
    path = folder / "nano-banana-2.yaml"
    text = path.read_text().replace("label: Nano Banana 2", "label: [Nano Banana 2", 1)
    path.write_text(text)
    with pytest.raises(SpecError, match=r"nano-banana-2\.yaml:\d+: YAML syntax error"):
        load_registry(folder)


def test_key_must_match_file_name(tmp_path: Path) -> None:
    folder = _copy_specs(tmp_path)
    (folder / "nano-banana-2.yaml").rename(folder / "nano-banana-two.yaml")
    with pytest.raises(SpecError, match="must match the file name"):
        load_registry(folder)


def test_rule_on_unknown_field_is_rejected(tmp_path: Path) -> None:
    folder = _copy_specs(tmp_path)
    path = folder / "kling-3.0-i2v.yaml"
    path.write_text(path.read_text().replace("{field: aspect_ratio, present: true}", "{field: aspect, present: true}"))
    with pytest.raises(SpecError, match="unknown field 'aspect'"):
        load_registry(folder)


NEW_MODEL = """
key: acme-video-1
label: Acme Video 1
family: acme
output_kind: video
provenance: {source: "test", checked_on: "2026-11-28", status: doc}
prompt: {required: true, max_chars: 100}
options:
  length:
    type: integer
    wire: string
    allowed: [4, 8]
    default: 4
    required: true
    provenance: {source: "test", checked_on: "2026-11-28"}
task_modes:
  - name: text_to_video
    provider_model: acme/video-1
    input_pattern: prompt_only
  - name: image_to_video
    provider_model: acme/video-1-i2v
    input_pattern: single_image
    slots:
      - {name: start, kind: image, roles: [first_frame], min: 1, max: 1, field: start_image, shape: scalar,
         formats: [png]}
verification_notes: ["test model"]
"""


def test_adding_a_model_is_adding_one_yaml_file(tmp_path: Path) -> None:
    folder = _copy_specs(tmp_path)
    (folder / "acme-video-1.yaml").write_text(NEW_MODEL)
    clear_registry_cache()
    registry = load_registry(folder)
    assert "acme-video-1" in registry.specs
    request = RawUserRequest(
        model_key="acme-video-1", prompt="hi", images=["https://x.test/a.png"], options={"length": "8"}
    )
    result = validate_request(request, registry=registry)
    assert result.state == "ready"
    assert result.task_mode == "image_to_video"
    payload = build_submission_payload(result, registry=registry)
    assert payload.model == "acme/video-1-i2v"
    assert payload.input == {"prompt": "hi", "start_image": "https://x.test/a.png", "length": "8"}
    bad = validate_request(
        RawUserRequest(model_key="acme-video-1", prompt="hi", options={"length": 5}), registry=registry
    )
    assert bad.state == "invalid" and bad.impossible_inputs[0].field == "length"
    # The bundled registry is untouched.
    assert "acme-video-1" not in load_registry().specs
    assert (
        check_wire_payload(
            "kling-2.6/text-to-video", {"prompt": "x", "sound": False, "aspect_ratio": "1:1", "duration": "5"}
        )
        == []
    )


async def test_async_load_returns_the_cached_registry() -> None:
    from kie_async.catalogue.specs import aload_registry

    assert await aload_registry() is load_registry()


def test_env_spec_folder_is_merged_over_the_bundled_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package onboards a model from a folder of the user's own, not by editing site-packages."""
    from kie_async.catalogue.specs import SPEC_DIR_ENV, clear_registry_cache
    from kie_async.core.data import data_dir

    bundled = data_dir("model_specs")
    (tmp_path / "nano-banana-2-copy.yaml").write_text(
        (bundled / "nano-banana-2.yaml")
        .read_text()
        .replace("key: nano-banana-2", "key: nano-banana-2-copy", 1)
        .replace("aliases: [nano-banana2, nanobanana-2]", "aliases: []", 1)
    )
    monkeypatch.setenv(SPEC_DIR_ENV, str(tmp_path))
    clear_registry_cache()
    try:
        registry = load_registry()
        assert "nano-banana-2-copy" in registry.specs and "kling-3.0-i2v" in registry.specs
    finally:
        monkeypatch.delenv(SPEC_DIR_ENV)
        clear_registry_cache()
    assert "nano-banana-2-copy" not in load_registry().specs


async def test_preload_skips_the_thread_only_while_every_cache_is_warm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The pipeline preloads for every run: warm, it must not hop to a thread; a cleared cache or a changed
    folder variable must load again (in a thread, not on the loop)."""
    import asyncio

    from kie_async.catalogue import model_data
    from kie_async.catalogue.pricing import clear_pricing_cache
    from kie_async.catalogue.specs import clear_registry_cache, loaded_registry

    hops: list[object] = []
    real_to_thread = asyncio.to_thread

    async def counting(func: object, /, *args: object, **kwargs: object) -> object:
        hops.append(func)
        return await real_to_thread(func, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "to_thread", counting)
    await model_data.preload_model_data()
    hops.clear()
    await model_data.preload_model_data()
    assert hops == []

    clear_pricing_cache()
    await model_data.preload_model_data()
    assert len(hops) == 1

    clear_registry_cache()
    assert loaded_registry() is None
    await model_data.preload_model_data()
    assert len(hops) == 2 and loaded_registry() is not None

    from kie_async.catalogue.pricing import PRICING_DIR_ENV

    monkeypatch.setenv(PRICING_DIR_ENV, str(tmp_path))  # other folders: load again
    await model_data.preload_model_data()
    await model_data.preload_model_data()
    assert len(hops) == 3
