"""Turn a provider docs page's createTask request schema into one of our YAML model specs.

Kie.ai's pages carry an OpenAPI block (read by :mod:`kie_async.core.provider_pages`); it states field types, enums,
defaults, ranges, required fields and, in the descriptions, media formats and sizes. Copying those by hand into
~100 specs would drift, so this importer derives them mechanically and says plainly (``TODO(import)`` comments)
what a schema cannot express: mutually exclusive scenarios, conditional requirements, guessed media roles.
A person resolves those in the committed spec; :mod:`kie_async.catalogue.spec_drift` then re-imports every page and
reports any committed fact that no longer matches its page, unless the spec lists it as an override with a why.

The importer holds no per-model knowledge: names, descriptions and the model id are its only inputs.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kie_async.core.provider_pages import JsonSchema, PageOperation, ProviderPage

CREATE_TASK_PATH = "/api/v1/jobs/createTask"
TODO = "TODO(import)"

_MIME_FORMATS: dict[str, list[str]] = {
    "jpeg": ["jpg", "jpeg"],
    "jpg": ["jpg", "jpeg"],
    "png": ["png"],
    "webp": ["webp"],
    "gif": ["gif"],
    "bmp": ["bmp"],
    "tiff": ["tiff", "tif"],
    "heic": ["heic"],
    "avif": ["avif"],
    "mp4": ["mp4"],
    "quicktime": ["mov"],
    "mov": ["mov"],
    "x-matroska": ["mkv"],
    "mkv": ["mkv"],
    "webm": ["webm"],
    "mpeg": ["mp3"],
    "mp3": ["mp3"],
    "wav": ["wav"],
    "x-wav": ["wav"],
    "aac": ["aac"],
    "ogg": ["ogg"],
    "x-m4a": ["m4a"],
    "m4a": ["m4a"],
    "flac": ["flac"],
    "avi": ["avi"],
}
_TYPES_CLAUSE = re.compile(r"(?:types|formats?)\s*:\s*([^;)\n]+)", re.I)
_MIME = re.compile(r"\b(?:image|video|audio)/([a-z0-9+-]+(?:\.[a-z0-9+-]+)*)", re.I)
_AUDIO_MP4 = re.compile(r"\baudio/mp4\b", re.I)
_SUPPORTS = re.compile(
    r"supports?\s+((?:[A-Za-z0-9]+(?:,\s*|\s+and\s+|\s*/\s*|,\s*and\s+))+[A-Za-z0-9]+)\s+"
    r"(?:formats?|files?)",
    re.I,
)
_STATED_MIN = re.compile(r"min(?:imum)?\s*(?:value)?\s*:\s*`?(-?\d+(?:\.\d+)?)", re.I)
_STATED_MAX = re.compile(r"max(?:imum)?\s*(?:value)?\s*:\s*`?(-?\d+(?:\.\d+)?)", re.I)
_MAX_MB = re.compile(
    r"(?:max(?:imum)?\s*(?:file\s*)?size[^:\d]{0,30}:?\s*(?:of\s*)?|not exceeding\s*|up to\s*)"
    r"(\d+(?:\.\d+)?)\s*MB",
    re.I,
)
_UP_TO = re.compile(
    r"(?:up to|maximum of|max(?:imum)?\s*:?|at most|no more than)\s*(\d+)\s*"
    r"(?:\w+\s+)?(?:images?|videos?|audios?|files?|urls?|items?|shots?)",
    re.I,
)
_COUNT_RANGE = re.compile(
    r"\b(\d+)\s*(?:-|to)\s*(\d+)\s*(?:images?|videos?|audios?|files?|urls?|items?|shots?)\b", re.I
)
_VALUE_RANGE = re.compile(r"(?:range\s*:?\s*|\bin\s+|between\s+|from\s+)(-?\d+)\s*(?:-|to|and)\s*(-?\d+)\b", re.I)
_EXCLUSIVE = re.compile(
    r"mutually exclusive|cannot be used (?:together|with|simultaneously)|not both|"
    r"only one of|choose one",
    re.I,
)
_CONDITIONAL = re.compile(
    r"required (?:when|if)|only (?:when|if|takes effect)|takes effect when|"
    r"(?:not supported|unsupported) (?:for|with|when)|is ignored when|only supported",
    re.I,
)

_MODE_WORDS: tuple[tuple[str, str], ...] = (
    ("motion-control", "motion_control"),
    ("speech-to-video", "audio_to_video"),
    ("avatar", "audio_to_video"),
    ("from-audio", "audio_to_video"),
    ("reference-to-video", "multimodal_reference"),
    ("r2v", "multimodal_reference"),
    ("video-to-video", "video_to_video"),
    ("videoedit", "video_to_video"),
    ("video-edit", "video_to_video"),
    ("animate", "video_to_video"),
    ("watermark-remover", "video_to_video"),
    ("upscale", "upscale"),
    ("extend", "follow_up"),
    ("characters", "follow_up"),
    ("text-to-speech", "text_to_audio"),
    ("text-to-dialogue", "text_to_audio"),
    ("sound-effect", "text_to_audio"),
    ("audio-isolation", "audio_to_audio"),
    ("speech-to-text", "audio_to_audio"),
    ("image-to-video", "image_to_video"),
    ("text-to-video", "text_to_video"),
    ("text-to-image", "text_to_image"),
    ("image-to-image", "image_edit"),
    ("edit", "image_edit"),
    ("remix", "image_edit"),
    ("reframe", "image_edit"),
    ("remove-background", "image_edit"),
    ("storyboard", "text_to_video"),
)
_VIDEO_MODES = {
    "text_to_video",
    "image_to_video",
    "first_last_frames",
    "multimodal_reference",
    "motion_control",
    "video_to_video",
    "audio_to_video",
}
_AUDIO_MODES = {"text_to_audio", "audio_to_audio"}
_PATTERNS = {
    "text_to_image": "prompt_only",
    "text_to_video": "prompt_only",
    "image_to_video": "single_image",
    "image_edit": "image_edit",
    "multimodal_reference": "multimodal_reference",
    "motion_control": "motion_control",
    "video_to_video": "video_edit",
    "audio_to_video": "audio_driven",
    "text_to_audio": "text_to_audio",
    "audio_to_audio": "audio_edit",
    "upscale": "upscale",
    "follow_up": "follow_up",
    "first_last_frames": "first_last_frames",
}
_KEY_WORDS = (
    ("text-to-video", "t2v"),
    ("image-to-video", "i2v"),
    ("text-to-image", "t2i"),
    ("image-to-image", "i2i"),
    ("video-to-video", "v2v"),
    ("speech-to-video", "s2v"),
    ("reference-to-video", "r2v"),
)
_PROMPT_NAMES = ("prompt", "text")
_NON_MEDIA = re.compile(r"task_id|callback", re.I)
_MEDIA_NAME = re.compile(
    r"(_url|_urls)$|^(image|video|audio|image_input|input_urls|mask|reference_image|"
    r"reference_video|reference_voice|first_frame|first_clip)$",
    re.I,
)


_KEY = re.compile(r"[a-z0-9][a-z0-9.-]{0,99}")


class ImportedSpec(BaseModel):
    """An importer result: the spec data (our YAML format) and what a person still has to decide."""

    model_config = ConfigDict(frozen=True)

    key: str
    data: dict[str, Any]
    todos: list[str] = Field(default_factory=list)
    page_notes: list[str] = Field(default_factory=list, description="defects of the page itself")


class SpecImportError(ValueError):
    """The page cannot be imported (no createTask operation, no input schema)."""


def model_key_for(model_id: str) -> str:
    """Our key scheme: the provider id, slashes to dashes, versions dotted, mode words abbreviated.

    ``wan/2-6-image-to-video`` -> ``wan-2.6-i2v``; ``kling/v2-1-pro`` -> ``kling-v2.1-pro``.
    """
    key = model_id.strip().lower().replace("/", "-").replace("_", "-")
    for words, short in _KEY_WORDS:
        key = key.replace(words, short)
    key = re.sub(r"(?<![0-9a-z])(v?\d)-(\d)(?=-|$)", r"\1.\2", key)
    return re.sub(r"-{2,}", "-", key).strip("-")


def create_task_operation(page: ProviderPage) -> PageOperation:
    op = page.operation(CREATE_TASK_PATH)
    if op is None or not op.request_schema:
        raise SpecImportError(f"{page.source}: documents no {CREATE_TASK_PATH} request schema (a chat or other API?)")
    return op


def input_schema(op: PageOperation) -> JsonSchema:
    schema = op.request_schema or {}
    inp = (schema.get("properties") or {}).get("input")
    if not isinstance(inp, dict) or not isinstance(inp.get("properties"), dict):
        raise SpecImportError("the createTask schema has no input object with properties")
    return inp


def import_page(
    page: ProviderPage, *, family: str | None = None, key: str | None = None, model_id: str | None = None
) -> ImportedSpec:
    """Derive a spec from ``page``'s createTask schema. ``family`` defaults to the page's folder."""
    op = create_task_operation(page)
    inp = input_schema(op)
    todos: list[str] = []
    notes: list[str] = []
    provider_model = _provider_model(page, op, model_id, todos, notes)
    model_key = _checked_key(key or model_key_for(provider_model))
    fam = family or _default_family(page.source)
    props, required = _properties(inp, notes)

    prompt_name = next((n for n in _PROMPT_NAMES if n in props and props[n].get("type") in (None, "string")), None)
    media_names = [n for n in props if n != prompt_name and _is_media(n, props[n])]
    option_names = [n for n in props if n != prompt_name and n not in media_names]

    context = f"{provider_model} {page.title or ''} {op.summary or ''}"
    mode_name = _mode_name(context, media_names, props, required)
    output_kind = _output_kind(mode_name, context, props)
    slots = _unique_slot_names([_slot(n, props[n], n in required, todos) for n in media_names])
    _role_todos(mode_name, slots, todos)
    _description_todos(props, todos)

    data = _spec_head(page, op, model_key, fam, output_kind)
    data["prompt"] = _prompt_entry(prompt_name, props, required, notes)
    options = {name: _field(name, props[name], todos, notes, top_required=name in required) for name in option_names}
    if options:
        data["options"] = options
    mode: dict[str, Any] = {"name": mode_name, "provider_model": provider_model, "input_pattern": _PATTERNS[mode_name]}
    if slots:
        mode["slots"] = slots
    data["task_modes"] = [mode]
    if prompt_name is not None:  # a preset rewrites the prompt: pointless for a model that takes none
        data["default_presets"] = {_PATTERNS[mode_name]: f"{fam.replace('-', '_')}_v1"}
    checked_on = data["provenance"]["checked_on"]
    data["verification_notes"] = [
        f"Imported from the provider's OpenAPI block ({page.source}, captured "
        f"{checked_on}); nothing here was checked against the live API by "
        f"us."
    ] + [f"Page defect: {n}" for n in notes]
    data["source_page"] = {"page": page.source, "url": page.url, "captured": checked_on}
    return ImportedSpec(key=model_key, data=data, todos=todos, page_notes=notes)


def _provider_model(
    page: ProviderPage, op: PageOperation, model_id: str | None, todos: list[str], notes: list[str]
) -> str:
    """The model id the spec sends: the one given, else the schema's first (a disagreeing example is noted)."""
    provider_model = model_id or (op.model_ids[0] if op.model_ids else None)
    if provider_model is None:
        raise SpecImportError(f"{page.source}: the schema names no model id")
    example_ids = sorted({str(e["model"]) for e in op.request_examples if isinstance(e, dict) and "model" in e})
    if model_id is None and example_ids and provider_model not in example_ids:
        notes.append(f"the schema's model enum says {provider_model!r} but the page's example sends {example_ids[0]!r}")
        todos.append(
            f"model id: schema {provider_model!r} vs example {example_ids[0]!r}; re-import with "
            f"--model-id and record an override of provider_models"
        )
    if len(op.model_ids) > 1:
        todos.append(f"the page lists several model ids {list(op.model_ids)}; this spec uses {provider_model}")
    return provider_model


def _checked_key(model_key: str) -> str:
    if not _KEY.fullmatch(model_key):
        raise SpecImportError(
            f"model key {model_key!r} is not lower-case letters, digits, '.' and '-' (it names the spec file)"
        )
    return model_key


def _properties(inp: JsonSchema, notes: list[str]) -> tuple[dict[str, JsonSchema], set[str]]:
    """The input's fields by their (stripped) names, and the required ones (a page defect is noted)."""
    raw_props: dict[str, Any] = inp["properties"]
    required = {str(r).strip() for r in inp.get("required") or []}
    props: dict[str, JsonSchema] = {}
    for raw_name, prop in raw_props.items():
        name = str(raw_name).strip()
        if name != raw_name:
            notes.append(f"the page spells the field {raw_name!r} with stray whitespace; sent as {name!r}")
        props[name] = prop if isinstance(prop, dict) else {}
    unknown_required = required - set(props)
    if unknown_required:
        notes.append(f"the page requires {sorted(unknown_required)}, which it does not define; ignored")
    return props, required


def _description_todos(props: dict[str, JsonSchema], todos: list[str]) -> None:
    """What a schema cannot express but a description states: exclusive scenarios, conditions."""
    for name, prop in props.items():
        text = str(prop.get("description") or "")
        if _EXCLUSIVE.search(text):
            todos.append(
                f"{name}: the description states exclusive scenarios ({_excerpt(text, _EXCLUSIVE)}); "
                f"split task modes or add a rule"
            )
        elif _CONDITIONAL.search(text):
            todos.append(
                f"{name}: the description states a condition ({_excerpt(text, _CONDITIONAL)}); "
                f"add a rule or a verification note"
            )


def _spec_head(page: ProviderPage, op: PageOperation, model_key: str, family: str, output_kind: str) -> dict[str, Any]:
    """The spec's first keys: key, label, family, output kind, description, provenance."""
    provenance = {
        "source": f"{page.url or page.source} (OpenAPI block, imported)",
        "checked_on": page.captured.isoformat() if page.captured else "unknown",
        "status": "doc",
    }
    data: dict[str, Any] = {
        "key": model_key,
        "label": page.title or model_key,
        "family": family,
        "output_kind": output_kind,
    }
    summary = op.summary
    if summary and summary != data["label"]:
        data["description"] = summary
    data["provenance"] = provenance
    return data


def _prompt_entry(
    prompt_name: str | None, props: dict[str, JsonSchema], required: set[str], notes: list[str]
) -> dict[str, Any]:
    if prompt_name is None:
        return {"field": "prompt", "accepted": False, "required": False}
    prompt: dict[str, Any] = {"field": prompt_name, "required": prompt_name in required}
    _chars(props[prompt_name], prompt, notes, prompt_name)
    return prompt


def _default_family(source: str) -> str:
    parts = source.split("/")
    return parts[-2] if len(parts) >= 3 else parts[-1].removesuffix(".md").split("-")[0]


def _is_media(name: str, prop: JsonSchema) -> bool:
    if _NON_MEDIA.search(name) or not _MEDIA_NAME.search(name):
        return False
    kind = prop.get("type")
    if kind == "array":
        items = prop.get("items") or {}
        return isinstance(items, dict) and items.get("type") in (None, "string")
    return kind in (None, "string")


def _media_kind(name: str, prop: JsonSchema) -> str:
    lowered = name.lower()
    if "video" in lowered or "clip" in lowered:
        return "video"
    if "audio" in lowered or "voice" in lowered:
        return "audio"
    if any(w in lowered for w in ("image", "frame", "mask", "input")):
        text = str(prop.get("description") or "").lower()
        if "image" not in lowered and "video" in text and "image" not in text:
            return "video"
        return "image"
    text = str(prop.get("description") or "").lower()
    counts = {k: text.count(k) for k in ("image", "video", "audio")}
    return max(counts, key=lambda k: counts[k]) if any(counts.values()) else "image"


def _role(name: str, prop: JsonSchema) -> str:
    lowered = name.lower()
    text = str(prop.get("description") or "").lower().replace("-", " ")
    if any(w in lowered for w in ("end_image", "last_frame", "tail_image")) or (
        "last frame" in text and "first" not in text
    ):
        return "last_frame"
    if "first_frame" in lowered or ("first frame" in text and "last frame" not in text):
        return "first_frame"
    return "reference"


def _slot(name: str, prop: JsonSchema, required: bool, todos: list[str]) -> dict[str, Any]:
    kind = _media_kind(name, prop)
    text = str(prop.get("description") or "")
    is_list = prop.get("type") == "array"
    slot: dict[str, Any] = {
        "name": name.removesuffix("_urls").removesuffix("_url") or name,
        "kind": kind,
        "roles": [_role(name, prop)],
    }
    if is_list:
        low = int(prop.get("minItems", 1 if required else 0))
        high = prop.get("maxItems")
        counted = _COUNT_RANGE.search(text)
        if high is None and counted:
            low, high = max(low, int(counted.group(1))), int(counted.group(2))
        if high is None:
            match = _UP_TO.search(text)
            high = int(match.group(1)) if match else None
        if high is None:
            todos.append(f"{name}: the page gives no item count; set slot max by hand (imported as 1)")
            high = 1
        # minItems bounds a list only when it is sent: a field the page does not require stays optional.
        slot["min"] = max(low, 1) if required else 0
        slot["max"] = max(int(high), slot["min"], 1)
    else:
        slot["min"] = 1 if required else 0
        slot["max"] = 1
        slot["shape"] = "scalar"
    slot["field"] = name
    formats = _formats(text)
    if formats:
        slot["formats"] = formats
    size = _MAX_MB.search(text)
    if size:
        slot["max_mb"] = (
            float(size.group(1))
            if "." in size.group(1) and not size.group(1).endswith(".0")
            else int(float(size.group(1)))
        )
    return slot


def _unique_slot_names(slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A slot whose short name an earlier slot already has (``image_url`` and ``image_urls``) is named by its field:
    media are sent by slot name, so one name for two fields would send a file twice."""
    seen: set[str] = set()
    for slot in slots:
        if slot["name"] in seen:
            slot["name"] = slot["field"]
        seen.add(slot["name"])
    return slots


def _formats(text: str) -> list[str]:
    clause = _TYPES_CLAUSE.search(text) or _SUPPORTS.search(text)
    if clause is None:
        return []
    found: list[str] = []
    subtypes = _MIME.findall(clause.group(1)) or re.findall(r"[A-Za-z0-9]+", clause.group(1))
    for sub in subtypes:
        for ext in _MIME_FORMATS.get(sub.lower(), []):
            if ext not in found:
                found.append(ext)
    if _AUDIO_MP4.search(clause.group(1)) and "m4a" not in found:
        found.append("m4a")  # audio/mp4 is what an .m4a file is served as
    return found


def _mode_name(context: str, media: list[str], props: dict[str, JsonSchema], required: set[str]) -> str:
    """The task mode: from mode words in the model id or page title, else from the prose and required media."""
    words = context.lower().replace(" ", "-")
    for word, mode in _MODE_WORDS:
        if word in words:
            return mode
    needed = {_media_kind(n, props[n]) for n in media if n in required}
    if _makes_video(context, props):
        if "image" in needed:
            return "image_to_video"
        return "video_to_video" if "video" in needed else "text_to_video"
    return "image_edit" if "image" in needed else "text_to_image"


def _makes_video(context: str, props: dict[str, JsonSchema]) -> bool:
    if "video" in context.lower():
        return True
    prompt = next((props[n] for n in _PROMPT_NAMES if n in props), {})
    prompt_text = str(prompt.get("description") or "").lower()
    if "video" in prompt_text or "image" in prompt_text:
        return "video" in prompt_text
    prose = _MIME.sub("", " ".join(str(p.get("description") or "") for p in props.values()).lower())
    return prose.count("video") > prose.count("image")


def _output_kind(mode: str, context: str, props: dict[str, JsonSchema]) -> str:
    if mode in _VIDEO_MODES:
        return "video"
    if mode in _AUDIO_MODES:
        return "audio"
    if mode in ("upscale", "follow_up"):
        return "video" if _makes_video(context, props) or any("video" in n for n in props) else "image"
    return "image"


def _role_todos(mode: str, slots: list[dict[str, Any]], todos: list[str]) -> None:
    roles = [r for s in slots for r in s["roles"]]
    images = [s for s in slots if s["kind"] == "image"]
    if mode == "image_to_video" and "first_frame" not in roles and images:
        todos.append(
            f"which image is the first frame? imported {images[0]['field']} as a reference; "
            f"set roles: [first_frame] if the page means a first frame"
        )


def _chars(prop: JsonSchema, out: dict[str, Any], notes: list[str], name: str) -> None:
    low, high = prop.get("minLength"), prop.get("maxLength")
    text = str(prop.get("description") or "")
    stated = re.search(r"max(?:imum)?\s*(?:length)?\s*:?\s*(\d[\d,]*)\s*char", text, re.I)
    if high is None and stated:
        high = int(stated.group(1).replace(",", ""))
    elif high is not None and stated and int(stated.group(1).replace(",", "")) != int(high):
        notes.append(f"{name}: maxLength {high} but the description says {stated.group(1)} characters")
    stated_low = re.search(r"min(?:imum)?\s*length\s*:?\s*(\d+)", text, re.I)
    if low is None and stated_low:
        low = int(stated_low.group(1))
    if isinstance(low, int) and low > 0:
        out["min_chars"] = low
    if isinstance(high, int | float):
        out["max_chars"] = int(high)


def _numeric_strings(values: list[Any]) -> str | None:
    if not values or not all(isinstance(v, str) for v in values):
        return None
    if all(re.fullmatch(r"-?\d+", v) for v in values):
        return "integer"
    if all(re.fullmatch(r"-?\d+(\.\d+)?", v) for v in values):
        return "number"
    return None


def _as_number(kind: str, value: Any) -> Any:
    try:
        return int(value) if kind == "integer" else float(value)
    except (TypeError, ValueError):
        return value


def _field(
    name: str, prop: JsonSchema, todos: list[str], notes: list[str], *, top_required: bool = False, nested: bool = False
) -> dict[str, Any]:
    out = _field_type(name, prop, todos, notes)
    if top_required:
        out["required"] = True
    _field_default(name, prop, out, notes)
    _field_bounds(name, prop, out, notes)
    text = str(prop.get("description") or "")
    if out["type"] == "string":
        _chars(prop, out, notes, name)
    if out["type"] == "list":
        _list_counts(prop, text, out)
    if out["type"] == "object":
        sub_required = {str(r).strip() for r in prop.get("required") or []}
        out["fields"] = {
            str(k).strip(): _field(
                f"{name}.{str(k).strip()}",
                v if isinstance(v, dict) else {},
                todos,
                notes,
                top_required=str(k).strip() in sub_required,
                nested=True,
            )
            for k, v in prop["properties"].items()
        }
    if "min" in out and "max" in out and out["min"] > out["max"]:
        notes.append(f"{name}: minimum {out['min']} is above maximum {out['max']}; range left out")
        out.pop("min")
        out.pop("max")
    return out


def _field_type(name: str, prop: JsonSchema, todos: list[str], notes: list[str]) -> dict[str, Any]:
    """The field's type (an enum's allowed values, a number sent as a string, a list's items)."""
    out: dict[str, Any] = {}
    kind = prop.get("type")
    enum = prop.get("enum")
    if isinstance(enum, list) and enum:
        numeric = _numeric_strings(enum)
        if kind == "string" and numeric:
            out["type"] = numeric
            out["wire"] = "string"
            out["allowed"] = [_as_number(numeric, v) for v in enum]
        elif kind in ("integer", "number"):
            out["type"] = kind
            out["allowed"] = list(enum)
        else:
            out["type"] = "enum"
            out["allowed"] = list(enum)
    elif kind in ("string", "integer", "number", "boolean"):
        out["type"] = kind
    elif kind == "array":
        out["type"] = "list"
        items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
        out["items"] = _field(f"{name}[]", items or {"type": "string"}, todos, notes, nested=True)
    elif kind == "object" and isinstance(prop.get("properties"), dict) and prop["properties"]:
        out["type"] = "object"
    else:
        todos.append(f"{name}: the page gives type {kind!r}; imported as a string")
        out["type"] = "string"
    return out


def _field_default(name: str, prop: JsonSchema, out: dict[str, Any], notes: list[str]) -> None:
    """The page's default, unless it contradicts the field's type (a page defect, noted)."""
    default = prop.get("default")
    if default is None:
        return
    if out.get("wire") == "string":
        default = _as_number(out["type"], default)
    if "allowed" in out and default not in out["allowed"]:
        notes.append(f"{name}: default {default!r} is not one of its enum values; default left out")
    elif out["type"] == "boolean" and not isinstance(default, bool):
        notes.append(f"{name}: default {default!r} is not a boolean; default left out")
    else:
        out["default"] = default


def _field_bounds(name: str, prop: JsonSchema, out: dict[str, Any], notes: list[str]) -> None:
    """A number's range: the schema's finite bounds, else one its description states."""
    for src, dst in (("minimum", "min"), ("maximum", "max")):
        bound = prop.get(src)
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            if math.isfinite(bound):
                out[dst] = bound
            else:
                notes.append(f"{name}: {src} {bound!r} is not a finite number; left out")
    text = str(prop.get("description") or "")
    if out["type"] in ("integer", "number") and "allowed" not in out and "min" not in out and "max" not in out:
        low, high = _STATED_MIN.search(text), _STATED_MAX.search(text)
        stated = _VALUE_RANGE.search(text)
        if low and high:
            out["min"], out["max"] = _as_number(out["type"], low.group(1)), _as_number(out["type"], high.group(1))
        elif stated:
            out["min"], out["max"] = int(stated.group(1)), int(stated.group(2))


def _list_counts(prop: JsonSchema, text: str, out: dict[str, Any]) -> None:
    """A list's item counts: the schema's, else the ones its description states."""
    counted = _COUNT_RANGE.search(text)
    up_to = _UP_TO.search(text)
    if isinstance(prop.get("minItems"), int):
        out["min_items"] = prop["minItems"]
    elif counted:
        out["min_items"] = int(counted.group(1))
    if isinstance(prop.get("maxItems"), int):
        out["max_items"] = prop["maxItems"]
    elif counted:
        out["max_items"] = int(counted.group(2))
    elif up_to:
        out["max_items"] = int(up_to.group(1))


def _excerpt(text: str, pattern: re.Pattern[str]) -> str:
    match = pattern.search(text)
    if match is None:
        return ""
    start = max(0, match.start() - 40)
    snippet = " ".join(text[start : match.end() + 60].split())
    return f"'…{snippet}…'"


def render_yaml(imported: ImportedSpec) -> str:
    """The spec as YAML text: a header naming the page, then one ``# TODO(import):`` line per open question."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump(_flow_leaves(imported.data), buf)
    page = imported.data.get("source_page", {}).get("page", "?")
    header = [f"# {imported.data.get('label', imported.key)}: imported by `kie-async models import` from {page}."]
    header += [f"# {TODO}: {t}" for t in imported.todos]
    return "\n".join(header) + "\n" + buf.getvalue()


def _flow_leaves(value: Any) -> Any:
    """Short scalar lists read best inline (``allowed: [a, b]``); mappings stay in block style.

    Strings with a colon (``16:9``) are quoted: libyaml, the C parser the specs are loaded with, refuses a plain
    ``1:1`` inside ``[...]``, and YAML 1.1 readers would take a plain one for a base-60 number.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import SingleQuotedScalarString

    if isinstance(value, str) and ":" in value and "://" not in value and not any(c.isspace() for c in value):
        return SingleQuotedScalarString(value)

    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _flow_leaves(v)
        return out
    if isinstance(value, list):
        seq = CommentedSeq(_flow_leaves(v) for v in value)
        if all(not isinstance(v, dict | list) and len(str(v)) <= 40 for v in value):
            seq.fa.set_flow_style()
        return seq
    return value
