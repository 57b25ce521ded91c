"""Turn Kie.ai's captured docs pages into the plain JSON Schema files the emulator judges requests by.

The emulator must not share the SDK's beliefs about a model (a wrong spec would then pass every test twice),
so it reads the provider's own request schema instead: the OpenAPI block of each docs page, reduced to the
JSON Schema keywords that state facts (types, enums, defaults, ranges, required lists, list sizes) and
stripped of prose (descriptions, examples, vendor ``x-`` keys). ``scripts/extract_provider_schemas.py``
writes the files; ``tests/test_provider_schemas.py`` regenerates them in memory and fails on any drift.

Where a page contradicts itself, the extractor applies a small named correction and records it in the file,
each with the page text that justifies it; nothing else is edited by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from kie_async.core.provider_pages import JsonSchema, PageOperation, ProviderPage, iter_pages

CREATE_TASK_PATH = "/api/v1/jobs/createTask"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SEPARATE_API_FOLDERS = ("veo3-api", "runway-api", "suno-api", "4o-image-api", "flux-kontext-api")
"""Folders of the APIs with their own endpoints; their create endpoints are bundled too."""
_NOT_CREATE = re.compile(r"download-url|/get-timestamped-lyrics|record-info|record-detail")
"""POST endpoints of those folders that read rather than buy (Veo's POST get-4k-video buys a task: it is kept;
the GET reads, 1080p among them, are left out by their method)."""

_KEPT_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minItems",
        "maxItems",
        "uniqueItems",
        "required",
        "minProperties",
        "maxProperties",
    }
)
_SCHEMA_MAPS = frozenset({"properties"})
_SCHEMA_VALUES = frozenset({"items", "additionalProperties", "not"})
_SCHEMA_LISTS = frozenset({"oneOf", "anyOf", "allOf"})


class Correction(BaseModel):
    """One named edit of a page's schema, with the words on the page (or the facts file) that justify it."""

    model_config = ConfigDict(frozen=True)

    name: str
    pointer: str
    """JSON pointer into the bundled schema, e.g. ``/properties/model/enum``."""
    value: Any
    why: str


# Pages whose `model` enum was copied from a sibling page: the page's title, example and URL name another id.
_PAGE_CORRECTIONS: dict[str, list[Correction]] = {
    "market/kling/v25-turbo-image-to-video-pro.md": [
        Correction(
            name="model-id-from-example",
            pointer="/properties/model/enum",
            value=["kling/v2-5-turbo-image-to-video-pro"],
            why="the page's model enum repeats kling/v2-1-master-image-to-video (a sibling page's id); its title and "
            "request example send kling/v2-5-turbo-image-to-video-pro",
        )
    ],
    "market/qwen2/text-to-image.md": [
        Correction(
            name="model-id-from-example",
            pointer="/properties/model/enum",
            value=["qwen2/text-to-image"],
            why="the page's model enum repeats qwen2/image-edit (the edit page's id); its request example sends "
            "qwen2/text-to-image",
        )
    ],
    "market/kling/kling-3-0.md": [
        Correction(
            name="multi-shot-fields-not-always-required",
            pointer="/properties/input/required",
            value=["sound", "duration", "mode"],
            why="the page's input.required lists multi_shots and multi_prompt, yet multi_shots defaults to false and "
            "the page says multi_prompt is used only when multi_shots is true; it lists aspect_ratio, yet says "
            "aspect_ratio becomes optional when image_urls are given (Aspect Ratio Auto-Adaptation); it lists prompt, "
            "yet prompt is used when multi_shots is false. Those conditions are the named rules "
            "kling30-multi-prompt-with-multi-shots, kling30-aspect-ratio and kling30-prompt-single-shot",
        )
    ],
    "market/kling/motion-control-v3.md": [
        Correction(
            name="callback-optional",
            pointer="/required",
            value=["model", "input"],
            why="the top-level required list names callBackUrl, which every other createTask page and the "
            "createTask description mark optional (the facts file calls it an oddity in the docs)",
        ),
        Correction(
            name="prompt-length-from-text",
            pointer="/properties/input/properties/prompt/maxLength",
            value=2500,
            why="the prompt description says it may be up to 2500 characters long",
        ),
        Correction(
            name="one-image-from-text",
            pointer="/properties/input/properties/input_urls/maxItems",
            value=1,
            why="input_urls is described as '(Required) Include a URL of an image'",
        ),
        Correction(
            name="one-video-from-text",
            pointer="/properties/input/properties/video_urls/maxItems",
            value=1,
            why="video_urls is described as '(Required) Include a video URL'",
        ),
        Correction(
            name="orientation-values-from-text",
            pointer="/properties/input/properties/character_orientation/enum",
            value=["video", "image"],
            why="character_orientation is described as 'video: Refer to video; image: Refer to image'",
        ),
        Correction(
            name="background-values-from-text",
            pointer="/properties/input/properties/background_source/enum",
            value=["input_video", "input_image"],
            why="background_source is described as 'input_video: Use video background; input_image: Use "
            "image background'",
        ),
    ],
    "market/bytedance/seedance-2.md": [
        Correction(
            name="prompt-required-from-text",
            pointer="/properties/input/required",
            value=["prompt"],
            why="the prompt description says 'Required field' but the schema has no required list",
        ),
        Correction(
            name="duration-range-from-text",
            pointer="/properties/input/properties/duration/minimum",
            value=4,
            why="duration is described as 'Video duration in 4-15 seconds'",
        ),
        Correction(
            name="duration-range-from-text",
            pointer="/properties/input/properties/duration/maximum",
            value=15,
            why="duration is described as 'Video duration in 4-15 seconds'",
        ),
    ],
    "market/grok-imagine/text-to-video.md": [
        Correction(
            name="prompt-length-from-text",
            pointer="/properties/input/properties/prompt/maxLength",
            value=5000,
            why="the prompt description says 'Maximum length: 5000 characters'",
        ),
        Correction(
            name="duration-range-from-text",
            pointer="/properties/input/properties/duration/minimum",
            value=6,
            why="duration is described as '(6-30). (Minimum: 6, Maximum: 30, Step: 1)'",
        ),
        Correction(
            name="duration-range-from-text",
            pointer="/properties/input/properties/duration/maximum",
            value=30,
            why="duration is described as '(6-30). (Minimum: 6, Maximum: 30, Step: 1)'",
        ),
    ],
    "market/grok-imagine/image-to-video.md": [
        Correction(
            name="prompt-length-from-text",
            pointer="/properties/input/properties/prompt/maxLength",
            value=5000,
            why="the prompt description says 'Maximum length: 5000 characters'",
        ),
    ],
    "market/grok-imagine/text-to-image.md": [
        Correction(
            name="prompt-length-from-text",
            pointer="/properties/input/properties/prompt/maxLength",
            value=5000,
            why="the prompt description says 'Maximum length: 5000 characters'",
        ),
    ],
}

_PAGE_CORRECTIONS["market/bytedance/seedance-2-fast.md"] = _PAGE_CORRECTIONS["market/bytedance/seedance-2.md"]

# The separate APIs' create endpoints, by path: limits their pages state only in the field descriptions.
_API_CORRECTIONS: dict[str, list[Correction]] = {
    "/api/v1/runway/generate": [
        Correction(
            name="prompt-length-from-text",
            pointer="/properties/prompt/maxLength",
            value=1800,
            why="the prompt description says 'Maximum length is 1800 characters'",
        ),
        Correction(
            name="quality-values-from-text",
            pointer="/properties/quality/enum",
            value=["720p", "1080p"],
            why="quality is described as 'Video resolution, optional values are 720p or 1080p'",
        ),
        Correction(
            name="duration-values-from-text",
            pointer="/properties/duration/enum",
            value=[5, 10],
            why="duration is described as 'Video duration, optional values are 5 or 10'",
        ),
    ],
    "/api/v1/generate": [
        Correction(
            name="prompt-required-only-by-mode",
            pointer="/required",
            value=["customMode", "instrumental", "model", "callBackUrl"],
            why="the required list names prompt, yet the prompt description and the mode notes say custom mode with "
            "instrumental true needs only style and title; when prompt is needed is the rule "
            "suno-prompt-by-mode (page_rules)",
        )
    ],
    "/api/v1/gpt4o-image/generate": [
        Correction(
            name="five-images-from-text",
            pointer="/properties/filesUrl/maxItems",
            value=5,
            why="filesUrl is described as 'Up to 5 publicly reachable image URLs'",
        )
    ],
}

# Models the emulator serves whose page is not among the captured docs: derived from a sibling page.
_DERIVED_MODELS: dict[str, tuple[str, str]] = {
    "bytedance/seedance-2-mini": (
        "bytedance/seedance-2-fast",
        "the Seedance 2.0 Mini page is not in the capture; the facts file (section 5) says its fields and limits "
        "are those of Seedance 2.0 Fast (480p and 720p only) and that its OpenAPI enum even repeats "
        "bytedance/seedance-2-fast",
    ),
}


class BundledSchema(BaseModel):
    """One bundled file: which request it judges, where it came from, and the schema itself."""

    model_config = ConfigDict(frozen=True)

    endpoint: str
    models: list[str]
    page: dict[str, str | None]
    corrections: list[Correction] = []
    derived_from: str | None = None
    derived_why: str | None = None
    example_inputs: list[Any] = []
    """The ``input`` of each request example the page gives (for the SDK-vs-page cross-check)."""
    schema_: JsonSchema

    def file_name(self) -> str:
        """``market/<model-slug>.json`` for createTask models, ``apis/<path-slug>.json`` for the others."""
        if self.endpoint == CREATE_TASK_PATH:
            return f"market/{slug(self.models[0])}.json"
        return f"apis/{slug(self.endpoint)}.json"

    def to_json(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True, by_alias=False)
        data["schema"] = data.pop("schema_")
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def slug(text: str) -> str:
    """A file-name-safe form of a model id or path (``bytedance/seedance-2`` -> ``bytedance--seedance-2``)."""
    return re.sub(r"[^a-z0-9._-]+", "-", text.strip("/").lower().replace("/", "--"))


def to_json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema object as plain JSON Schema (2020-12): fact keywords only, ``nullable`` folded
    into ``type``, boolean ``exclusiveMinimum``/``exclusiveMaximum`` turned into numbers."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _KEPT_KEYWORDS:
            out[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_VALUES:
            out[key] = to_json_schema(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [to_json_schema(sub) for sub in value]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool) and out.pop(bound) and limit in out:
            out[bound] = out.pop(limit)
    if node.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _apply(schema: JsonSchema, correction: Correction) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in correction.pointer.lstrip("/").split("/")]
    target: Any = schema
    for part in parts[:-1]:
        if not isinstance(target, dict) or part not in target:
            raise ValueError(f"correction {correction.name!r}: {correction.pointer} points nowhere")
        target = target[part]
    if not isinstance(target, dict):
        raise ValueError(f"correction {correction.name!r}: {correction.pointer} points nowhere")
    target[parts[-1]] = correction.value


def _trim_property_names(node: Any, pointer: str) -> list[Correction]:
    """Property names with stray whitespace (``"reference_video_urls "``) would match nothing a client sends,
    so the constraint they carry would silently vanish; trim them, and record each trim as a correction."""
    done: list[Correction] = []
    if not isinstance(node, dict):
        return done
    required = node.get("required")
    if isinstance(required, list) and any(isinstance(r, str) and r != r.strip() for r in required):
        node["required"] = [r.strip() if isinstance(r, str) else r for r in required]
        done.append(
            Correction(
                name="trimmed-required-name",
                pointer=f"{pointer}/required",
                value=node["required"],
                why="the page's required list spells a key with stray whitespace",
            )
        )
    props = node.get("properties")
    if isinstance(props, dict):
        for name in list(props):
            if name != name.strip():
                props[name.strip()] = props.pop(name)
                done.append(
                    Correction(
                        name="trimmed-property-name",
                        pointer=f"{pointer}/properties/{name.strip()}",
                        value=name.strip(),
                        why=f"the page's schema spells the key {name!r}, with stray whitespace",
                    )
                )
        for name, sub in props.items():
            done.extend(_trim_property_names(sub, f"{pointer}/properties/{name}"))
    if isinstance(node.get("items"), dict):
        done.extend(_trim_property_names(node["items"], f"{pointer}/items"))
    return done


def _provenance(page: ProviderPage) -> dict[str, str | None]:
    return {
        "source": page.source,
        "url": page.url,
        "sha256": page.sha256,
        "captured": page.captured.isoformat() if page.captured else None,
    }


def _bundle(page: ProviderPage, op: PageOperation) -> BundledSchema:
    assert op.request_schema is not None
    schema: JsonSchema = {"$schema": SCHEMA_DIALECT, **to_json_schema(op.request_schema)}
    corrections = list(
        _PAGE_CORRECTIONS.get(page.source, []) if op.path == CREATE_TASK_PATH else _API_CORRECTIONS.get(op.path, [])
    )
    for correction in corrections:
        _apply(schema, correction)
    corrections.extend(_trim_property_names(schema, ""))
    model_schema = (schema.get("properties") or {}).get("model")
    models = model_schema.get("enum") if isinstance(model_schema, dict) else None
    if op.path == CREATE_TASK_PATH:
        models = list(models) if isinstance(models, list) else list(op.model_ids)
    else:
        models = [str(m) for m in models] if isinstance(models, list) else []
    examples = [
        e.get("input") if op.path == CREATE_TASK_PATH else e for e in op.request_examples if isinstance(e, dict)
    ]
    return BundledSchema(
        endpoint=op.path,
        models=[str(m) for m in models],
        page=_provenance(page),
        corrections=corrections,
        example_inputs=[e for e in examples if isinstance(e, dict)],
        schema_=schema,
    )


def extract_all(docs_root: Path) -> dict[str, BundledSchema]:
    """Every bundled schema, by file name: each market media model on createTask (chat and LLM pages use
    other endpoints and are left out), each create endpoint of the separate APIs, and the derived models."""
    found: dict[str, BundledSchema] = {}
    by_model: dict[str, BundledSchema] = {}
    for page in iter_pages(docs_root, under="market"):
        for op in page.operations:
            if op.path != CREATE_TASK_PATH or op.method != "post" or op.request_schema is None:
                continue
            bundle = _bundle(page, op)
            if len(bundle.models) != 1:
                raise ValueError(f"{page.source}: expected one model id, got {bundle.models}")
            model = bundle.models[0]
            if model in by_model:
                raise ValueError(
                    f"{page.source} and {by_model[model].page['source']} both claim model {model!r}; "
                    "add a named correction"
                )
            by_model[model] = bundle
            found[bundle.file_name()] = bundle
    for folder in SEPARATE_API_FOLDERS:
        for page in iter_pages(docs_root, under=folder):
            for op in page.operations:
                if op.method != "post" or op.request_schema is None or _NOT_CREATE.search(op.path):
                    continue
                bundle = _bundle(page, op)
                found[bundle.file_name()] = bundle
    for model, (sibling, why) in _DERIVED_MODELS.items():
        if model in by_model:
            raise ValueError(f"{model} now has its own page ({by_model[model].page['source']}); drop its derivation")
        base = by_model[sibling]
        schema = json.loads(json.dumps(base.schema_))
        schema["properties"]["model"]["enum"] = [model]
        derived = base.model_copy(
            update={"models": [model], "schema_": schema, "derived_from": sibling, "derived_why": why}
        )
        found[derived.file_name()] = derived
    return dict(sorted(found.items()))
