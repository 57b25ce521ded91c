"""The spec importer (`kie-async models import`) and the drift check that keeps committed specs on their pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kie_async.catalogue.spec_drift import check_spec, compare, reimport, spec_facts, unused_overrides
from kie_async.catalogue.spec_import import TODO, import_page, model_key_for, render_yaml
from kie_async.catalogue.specs import ModelSpec, load_registry, load_spec_file
from kie_async.core.provider_pages import read_page
from kie_async.interfaces.cli import main

SPEC_DIR = Path(__file__).resolve().parents[1] / "model_specs"

OPENAPI = {
    "openapi": "3.0.1",
    "info": {"title": "Acme Video", "version": "1"},
    "paths": {
        "/api/v1/jobs/createTask": {
            "post": {
                "summary": "Acme image to video",
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Body"}}}},
            }
        }
    },
    "components": {
        "schemas": {
            "Body": {
                "type": "object",
                "properties": {
                    "model": {"type": "string", "enum": ["acme/v1-2-image-to-video"]},
                    "input": {
                        "type": "object",
                        "required": ["prompt", "image_url", "duration"],
                        "properties": {
                            "prompt": {"type": "string", "maxLength": 1200},
                            "image_url": {
                                "type": "string",
                                "description": "The first frame (Accepted types: image/jpeg, "
                                "image/png; Max size: 10.0MB)",
                            },
                            "end_image_url": {"type": "string", "description": "Optional last frame image"},
                            "reference_audio_urls": {
                                "type": "array",
                                "items": {"type": "string"},
                                "minItems": 1,
                                "maxItems": 3,
                                "description": "Format: wav, mp3. Single audio not exceeding 15 MB. "
                                "Cannot be used together with end_image_url.",
                            },
                            "duration": {"type": "string", "enum": ["5", "10"], "default": "5"},
                            "cfg_scale": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
                            "seed": {"type": "integer", "description": "Seed in 0 to 99"},
                            "shots": {
                                "type": "array",
                                "description": "Supports up to 4 shots",
                                "items": {
                                    "type": "object",
                                    "required": ["text"],
                                    "properties": {"text": {"type": "string", "maxLength": 80}},
                                },
                            },
                        },
                    },
                },
            }
        }
    },
}


@pytest.fixture
def openapi_file(tmp_path: Path) -> Path:
    path = tmp_path / "acme.json"
    path.write_text(json.dumps(OPENAPI))
    return path


def test_key_scheme() -> None:
    assert model_key_for("wan/2-6-image-to-video") == "wan-2.6-i2v"
    assert model_key_for("kling/v2-1-pro") == "kling-v2.1-pro"
    assert model_key_for("kling-2.6/text-to-video") == "kling-2.6-t2v"
    assert model_key_for("nano-banana-pro") == "nano-banana-pro"
    assert model_key_for("hailuo/02-text-to-video-pro") == "hailuo-02-t2v-pro"


def test_import_reads_every_kind_of_fact(openapi_file: Path) -> None:
    imported = import_page(read_page(openapi_file), family="acme")
    spec = ModelSpec.model_validate(imported.data)
    assert spec.key == "acme-v1.2-i2v" and spec.family == "acme" and spec.output_kind == "video"
    assert spec.prompt.required and spec.prompt.max_chars == 1200
    duration = spec.options["duration"]
    assert (duration.type, duration.wire, duration.allowed, duration.default, duration.required) == (
        "integer",
        "string",
        [5, 10],
        5,
        True,
    )
    cfg = spec.options["cfg_scale"]
    assert (cfg.type, cfg.min, cfg.max, cfg.default) == ("number", 0, 1, 0.5)
    assert (spec.options["seed"].min, spec.options["seed"].max) == (0, 99)  # a range stated in words
    shots = spec.options["shots"]
    assert shots.max_items == 4 and shots.items is not None and shots.items.fields is not None
    assert shots.items.fields["text"].required and shots.items.fields["text"].max_chars == 80
    [mode] = spec.task_modes
    assert (mode.name, mode.provider_model, mode.input_pattern) == (
        "image_to_video",
        "acme/v1-2-image-to-video",
        "single_image",
    )
    slots = {s.field: s for s in mode.slots}
    first = slots["image_url"]
    assert (first.kind, first.roles, first.min, first.max, first.shape, first.formats, first.max_mb) == (
        "image",
        ["first_frame"],
        1,
        1,
        "scalar",
        ["jpg", "jpeg", "png"],
        10,
    )
    assert slots["end_image_url"].roles == ["last_frame"] and slots["end_image_url"].min == 0
    audio = slots["reference_audio_urls"]
    assert (audio.kind, audio.max, audio.formats, audio.max_mb) == ("audio", 3, ["wav", "mp3"], 15)
    assert audio.min == 0  # minItems bounds the list when sent; the page does not require the field
    assert any("exclusive" in t and "reference_audio_urls" in t for t in imported.todos)


def test_rendered_yaml_marks_todos_and_loads(openapi_file: Path, tmp_path: Path) -> None:
    imported = import_page(read_page(openapi_file))
    text = render_yaml(imported)
    assert text.count(f"# {TODO}:") == len(imported.todos) >= 1
    target = tmp_path / f"{imported.key}.yaml"
    target.write_text(text)
    assert load_spec_file(target).key == imported.key


def test_cli_import_writes_and_never_clobbers(
    openapi_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "specs"
    assert main(["models", "import", str(openapi_file), "--family", "acme", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert Path(report["path"]).name == "acme-v1.2-i2v.yaml" and report["todos"]
    assert main(["models", "import", str(openapi_file), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["models", "import", str(openapi_file), "--out", str(out), "--force"]) == 0
    capsys.readouterr()
    assert main(["models", "import", str(openapi_file)]) == 0  # no --out: print the spec
    assert "key: acme-v1.2-i2v" in capsys.readouterr().out


def test_cli_import_refuses_non_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "chat.md"
    page.write_text("# Chat\n\nNo OpenAPI here.\n")
    assert main(["models", "import", str(page)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "createTask" in err and "Traceback" not in err
    assert main(["models", "import", str(tmp_path / "missing.md")]) == 2
    assert main(["models", "import"]) == 2
    assert main(["models", "nano-banana-2", "--family", "x"]) == 2


def test_drift_is_detected_and_overrides_excuse_it(openapi_file: Path) -> None:
    imported = ModelSpec.model_validate(import_page(read_page(openapi_file)).data)
    assert compare(imported, imported) == []
    data = imported.model_dump(exclude_none=True, by_alias=True)
    data["options"]["duration"]["allowed"] = [5]
    data["options"]["duration"]["default"] = 5
    drifted = ModelSpec.model_validate(data)
    assert [d.path for d in compare(drifted, imported)] == ["options.duration.allowed"]
    data["overrides"] = [{"path": "options.duration", "why": "only 5 s is billed correctly (example)"}]
    excused = ModelSpec.model_validate(data)
    assert compare(excused, imported) == [] and unused_overrides(excused, imported) == []
    data["overrides"].append({"path": "options.seed", "why": "a stale excuse that covers nothing"})
    assert unused_overrides(ModelSpec.model_validate(data), imported) == ["options.seed"]


def test_range_and_enum_spellings_are_the_same_fact(openapi_file: Path) -> None:
    base = ModelSpec.model_validate(import_page(read_page(openapi_file)).data)
    data = base.model_dump(exclude_none=True, by_alias=True)
    data["options"]["seed"] = {"type": "integer", "min": 3, "max": 15}
    as_range = spec_facts(ModelSpec.model_validate(data))
    data["options"]["seed"] = {"type": "integer", "allowed": list(range(3, 16))}
    as_enum = spec_facts(ModelSpec.model_validate(data))
    assert as_range == as_enum and len(as_range["options.seed.allowed"]) == 13
    assert "options.seed.min" in spec_facts(base)  # 0-99 is too wide to compare as a set


# ---- the committed specs against the captured pages

PAGELESS = {"seedance-2.0-mini": "Kie.ai publishes no page for Seedance 2.0 mini (kie-api-facts §5 only)"}


def _committed() -> list[ModelSpec]:
    return list(load_registry(SPEC_DIR).specs.values())


@pytest.mark.parametrize("spec", _committed(), ids=lambda s: s.key)
def test_committed_spec_matches_its_page(spec: ModelSpec, kie_docs: Path) -> None:
    if spec.source_page is None:
        # A model of a separate API (Veo, Suno, ...: a `transport:` other than the market's) has no market page.
        separate_api = not getattr(getattr(spec, "transport", None), "is_market", True)
        assert spec.key in PAGELESS or separate_api, f"{spec.key} has no source_page and is not listed as page-less"
        return
    drifts = check_spec(spec, kie_docs)
    assert not drifts, "\n".join(map(str, drifts)) + "\n(fix the spec or add an override with a why)"
    assert unused_overrides(spec, reimport(spec, kie_docs)) == []


def test_committed_specs_have_no_open_todos() -> None:
    open_todos = [p.name for p in SPEC_DIR.glob("*.yaml") if TODO in p.read_text(encoding="utf-8")]
    assert open_todos == []


def test_hostile_pages_and_arguments(openapi_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "specs"
    # A key that would leave the output folder is refused before anything is written.
    assert main(["models", "import", str(openapi_file), "--key", "../../evil", "--out", str(out)]) == 2
    assert "model key" in capsys.readouterr().err and not (tmp_path / "evil.yaml").exists()
    # Non-finite bounds (YAML .nan / .inf) never become limits that no value can break.
    doc = json.loads(json.dumps(OPENAPI))
    schema = doc["components"]["schemas"]["Body"]["properties"]["input"]["properties"]
    schema["cfg_scale"].update({"minimum": float("nan"), "maximum": float("inf")})
    weird = tmp_path / "weird.yaml"
    from ruamel.yaml import YAML

    YAML(typ="safe", pure=True).dump(doc, weird)
    imported = import_page(read_page(weird))
    cfg = ModelSpec.model_validate(imported.data).options["cfg_scale"]
    assert cfg.min is None and cfg.max is None and any("finite" in n for n in imported.page_notes)
    # Binary garbage and a directory are one-line refusals, not tracebacks.
    garbage = tmp_path / "garbage.md"
    garbage.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["models", "import", str(garbage)]) == 2
    assert main(["models", "import", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 2
