"""Prompt presets: markdown system prompts (with front matter) that an external LLM uses to enhance a prompt.

The SDK never calls an LLM itself. It picks the preset that fits the model and the input pattern (or the
one asked for), renders it, and records raw / enhanced / final prompt so the payload sends the final one
and a run can be audited later. Presets are plain files so prompt writers can edit them without code,
and users can add their own folder (``preset_dirs=`` or ``KIE_PROMPT_PRESETS_DIR``), which overrides
bundled presets with the same key.
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import NormalizedRequest, RawUserRequest, ValidationResult
from kie_async.catalogue.specs import ModelRegistry, ModelSpec, load_registry
from kie_async.core.data import data_dir
from kie_async.core.errors import KieConfigError

PRESET_DIR_ENV = "KIE_PROMPT_PRESETS_DIR"
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n?(.*)\Z", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


class PresetError(KieConfigError):
    """A preset file is malformed or a requested preset does not exist."""

    hint = "check the preset key and the front matter (key, version, model_keys, input_patterns)"


class PromptPreset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    aliases: list[str] = Field(default_factory=list, description="other keys it answers to (the seed toolkit's)")
    version: int | str
    title: str | None = None
    description: str | None = None
    model_keys: list[str] = Field(default_factory=list)
    input_patterns: list[str] = Field(default_factory=list)
    body: str
    source_path: str

    def fits(self, model_key: str, input_pattern: str | None) -> bool:
        return model_key in self.model_keys and (input_pattern is None or input_pattern in self.input_patterns)


class PromptContext(BaseModel):
    """What an enhancer needs: the rendered system prompt, the user's prompt, and the limits that apply."""

    model_config = ConfigDict(frozen=True)

    model_key: str
    task_mode: str | None
    input_pattern: str | None
    preset_key: str | None = None
    preset_version: int | str | None = None
    preset_source: str | None = None
    requested_preset_key: str | None = Field(default=None, description="the key asked for (maybe an alias)")
    system_prompt_source: Literal["preset", "override", "none"] = "none"
    system_prompt: str | None = None
    raw_prompt: str | None = None
    prompt_max_chars: int | None = None
    available_presets: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class PromptEnhancementPreview(BaseModel):
    """A dry run: what would be sent to the enhancer, and which prompt the payload would carry."""

    model_config = ConfigDict(frozen=True)

    context: PromptContext
    raw_prompt: str | None
    enhanced_prompt: str | None = None
    final_prompt_used: str | None
    final_prompt_fits: bool
    messages: list[dict[str, str]] = Field(description="chat messages an LLM enhancer would receive")


def parse_preset(text: str, source: str) -> PromptPreset:
    match = _FRONT_MATTER.match(text)
    if not match:
        raise PresetError(f"{source}: a preset starts with a '---' front matter block")
    from ruamel.yaml import YAML  # loaded with the first preset, not with the package
    from ruamel.yaml.error import YAMLError

    try:
        meta: Any = YAML(typ="safe").load(match.group(1))
    except YAMLError as exc:
        raise PresetError(f"{source}: front matter is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise PresetError(f"{source}: front matter must be a mapping")
    try:
        return PromptPreset.model_validate({**meta, "body": match.group(2).strip(), "source_path": source})
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PresetError(f"{source}: {details}") from None


@functools.lru_cache(maxsize=16)
def _load_dir(folder: str) -> tuple[PromptPreset, ...]:
    presets = []
    for path in sorted(Path(folder).glob("*.md")):
        presets.append(parse_preset(path.read_text(encoding="utf-8"), str(path)))
    keys = Counter(p.key for p in presets)
    dupes = [k for k, n in keys.items() if n > 1]
    if dupes:
        raise PresetError(f"{folder}: preset key(s) defined twice: {dupes}")
    clash = sorted({a for p in presets for a in p.aliases} & set(keys))
    if clash:
        raise PresetError(f"{folder}: alias(es) {clash} are also preset keys; an alias names another key's preset")
    return tuple(presets)


def find_preset(
    presets: Mapping[str, PromptPreset], wanted: str, model_key: str, input_pattern: str | None
) -> PromptPreset | None:
    """The preset with key ``wanted``, else the one listing it as an alias.

    The toolkit had one prompt per model family (``nano_banana_2_v1``) where we have one per input pattern,
    so an alias may be listed by several presets: the one that fits the request's model and input pattern
    wins. ``None`` when nothing answers to ``wanted``.
    """
    if wanted in presets:
        return presets[wanted]
    named = [p for p in presets.values() if wanted in p.aliases]
    fitting = [p for p in named if p.fits(model_key, input_pattern)] or [p for p in named if model_key in p.model_keys]
    if len(fitting) == 1:
        return fitting[0]
    if len(named) == 1:
        return named[0]
    if not named:
        return None
    raise PresetError(
        f"prompt preset alias {wanted!r} means one of {sorted(p.key for p in named)}, and none fits "
        f"{model_key} / {input_pattern}",
        hint="name the preset by its key",
    )


def preset_folders(preset_dirs: str | Path | Sequence[str | Path] | None = None) -> list[Path]:
    """Bundled folder first, then ``KIE_PROMPT_PRESETS_DIR`` entries, then ``preset_dirs`` (later wins)."""
    folders = [data_dir("prompt_presets")]
    env = os.environ.get(PRESET_DIR_ENV)
    if env:
        folders.extend(Path(p) for p in env.split(os.pathsep) if p)
    if isinstance(preset_dirs, str | Path):
        folders.append(Path(preset_dirs))
    elif preset_dirs is not None:
        folders.extend(Path(p) for p in preset_dirs)
    return folders


def load_presets(preset_dirs: str | Path | Sequence[str | Path] | None = None) -> dict[str, PromptPreset]:
    """Every preset by key; a user folder's preset replaces a bundled one with the same key."""
    merged: dict[str, PromptPreset] = {}
    bundled = data_dir("prompt_presets")
    for folder in preset_folders(preset_dirs):
        if folder is not bundled:  # the bundled folder was found (and resolved) once; user folders each time
            if not folder.is_dir():
                raise PresetError(f"preset folder {folder} does not exist")
            folder = folder.resolve()
        for preset in _load_dir(str(folder)):
            merged[preset.key] = preset
    return merged


def bundled_presets() -> tuple[PromptPreset, ...]:
    """The presets shipped with kie-async, without any user folder."""
    return _load_dir(str(data_dir("prompt_presets").resolve()))


def clear_preset_cache() -> None:
    _load_dir.cache_clear()


def presets_cached() -> bool:
    """Whether any preset folder is parsed and in memory (a cheap check for async callers)."""
    return _load_dir.cache_info().currsize > 0


def _media_summary(normalized: NormalizedRequest) -> str:
    if not normalized.media:
        return "no input media"
    counts = Counter(f"{m.kind} ({m.role})" if m.role else m.kind for m in normalized.media)
    return ", ".join(f"{n} {label}" for label, n in counts.items())


def render_preset(preset: PromptPreset, variables: Mapping[str, object]) -> tuple[str, list[str]]:
    """Fill ``{{name}}`` placeholders; unknown names stay as written and are reported."""
    return render_template(preset.body, variables)


def render_template(template: str, variables: Mapping[str, object]) -> tuple[str, list[str]]:
    """Fill ``{{name}}`` placeholders in any template; unknown names stay as written and are reported."""
    unknown: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return str(variables[name])
        unknown.append(name)
        return match.group(0)

    return _PLACEHOLDER.sub(fill, template), unknown


def _as_normalized(
    request: RawUserRequest | NormalizedRequest | ValidationResult, registry: ModelRegistry | None
) -> NormalizedRequest:
    if isinstance(request, ValidationResult):
        return request.normalized
    if isinstance(request, RawUserRequest):
        return normalize_request(request, registry=registry)
    return request


def resolve_prompt_context(
    request: RawUserRequest | NormalizedRequest | ValidationResult,
    *,
    preset_key: str | None = None,
    preset_dirs: str | Path | Sequence[str | Path] | None = None,
    registry: ModelRegistry | None = None,
    system_prompt_override: str | None = None,
    allow_unknown_placeholders: bool = False,
) -> PromptContext:
    """Pick the requested preset (or the model's default for the detected input pattern) and render it.

    ``preset_key`` may be a seed toolkit key (an alias). ``system_prompt_override`` replaces the preset's text
    (same ``{{placeholders}}``); the preset still names the context. A placeholder that is not one of the
    known variables is a :class:`PresetError` (a typo would otherwise reach the LLM as literal braces);
    ``allow_unknown_placeholders=True`` leaves it as written, with a warning, for templates meant for an
    enhancer that fills its own variables.
    """
    reg = registry or load_registry()
    normalized = _as_normalized(request, reg)
    presets = load_presets(preset_dirs)
    pattern = normalized.input_pattern
    warnings: list[str] = []
    spec = reg.specs.get(normalized.model_key)
    fitting = sorted(k for k, p in presets.items() if p.fits(normalized.model_key, pattern))
    wanted = preset_key or normalized.prompt_preset
    if wanted is None and spec is not None and pattern is not None:
        wanted = spec.default_presets.get(pattern)
    base = _context_base(normalized, spec, fitting)
    variables = _template_variables(normalized, spec)
    if wanted is None and system_prompt_override is None:
        return PromptContext(**base, warnings=["no preset for this model and input pattern"])
    preset = find_preset(presets, wanted, normalized.model_key, pattern) if wanted is not None else None
    if preset is None and wanted is not None:
        raise PresetError(f"no prompt preset {wanted!r}; available for {normalized.model_key}: {fitting}")
    if system_prompt_override is not None:
        system = _render_checked(
            system_prompt_override, "system_prompt_override", variables, allow_unknown_placeholders, warnings
        )
        return PromptContext(
            **base,
            preset_key=preset.key if preset else None,
            preset_version=preset.version if preset else None,
            requested_preset_key=wanted,
            preset_source=preset.source_path if preset else None,
            system_prompt_source="override",
            system_prompt=system,
            warnings=warnings,
        )
    assert preset is not None and wanted is not None
    if not preset.fits(normalized.model_key, pattern):
        warnings.append(
            f"preset {wanted!r} is written for {preset.model_keys} / {preset.input_patterns}, "
            f"not {normalized.model_key} / {pattern}"
        )
    system = _render_checked(
        preset.body, f"preset {preset.key} ({preset.source_path})", variables, allow_unknown_placeholders, warnings
    )
    return PromptContext(
        **base,
        preset_key=preset.key,
        preset_version=preset.version,
        requested_preset_key=wanted,
        preset_source=preset.source_path,
        system_prompt_source="preset",
        system_prompt=system,
        warnings=warnings,
    )


def _context_base(normalized: NormalizedRequest, spec: ModelSpec | None, fitting: list[str]) -> dict[str, Any]:
    """The fields every :class:`PromptContext` carries, whichever preset (if any) is rendered."""
    return {
        "model_key": normalized.model_key,
        "task_mode": normalized.task_mode,
        "input_pattern": normalized.input_pattern,
        "raw_prompt": normalized.raw_prompt,
        "available_presets": fitting,
        "prompt_max_chars": spec.prompt.max_chars if spec else None,
    }


def _template_variables(normalized: NormalizedRequest, spec: ModelSpec | None) -> dict[str, object]:
    """The ``{{placeholders}}`` a preset or an override may use, each with a text even when the spec is unknown."""
    return {
        "model_key": normalized.model_key,
        "model_label": spec.label if spec else normalized.model_key,
        "task_mode": normalized.task_mode or "",
        "input_pattern": normalized.input_pattern or "",
        "prompt_max_chars": spec.prompt.max_chars if spec and spec.prompt.max_chars else "the model's limit",
        "media_summary": _media_summary(normalized),
        "user_prompt": normalized.raw_prompt or "",
    }


def _render_checked(
    template: str, what: str, variables: Mapping[str, object], allow_unknown: bool, warnings: list[str]
) -> str:
    text, unknown = render_template(template, variables)
    if unknown and not allow_unknown:
        names = ", ".join(f"{{{{{n}}}}}" for n in dict.fromkeys(unknown))
        raise PresetError(
            f"{what}: unknown placeholder(s) {names}",
            hint=f"use only {', '.join(f'{{{{{v}}}}}' for v in variables)}, or pass "
            "allow_unknown_placeholders=True to leave them as written",
        )
    warnings.extend(f"unknown placeholder {{{{{name}}}}} left as written" for name in unknown)
    return text


def apply_enhanced_prompt(
    request: NormalizedRequest | ValidationResult,
    final_prompt: str,
    *,
    enhanced_prompt: str | None = None,
    preset_key: str | None = None,
) -> NormalizedRequest:
    """Record the enhancement: the raw prompt stays, ``final_prompt_used`` is what the payload will send.

    Validate again afterwards: the final prompt may break a length limit the raw one met.
    """
    normalized = request.normalized if isinstance(request, ValidationResult) else request
    update: dict[str, Any] = {
        "final_prompt_used": final_prompt,
        "enhanced_prompt": enhanced_prompt if enhanced_prompt is not None else final_prompt,
    }
    if preset_key is not None:
        update["prompt_preset"] = preset_key
    return normalized.model_copy(update=update)


def dry_run_prompt_enhancement(
    request: RawUserRequest | NormalizedRequest | ValidationResult,
    *,
    preset_key: str | None = None,
    preset_dirs: str | Path | Sequence[str | Path] | None = None,
    enhancer: Callable[[PromptContext], str] | None = None,
    registry: ModelRegistry | None = None,
) -> PromptEnhancementPreview:
    """Show what would go to an enhancer and which prompt would be sent; call ``enhancer`` only if given."""
    context = resolve_prompt_context(request, preset_key=preset_key, preset_dirs=preset_dirs, registry=registry)
    raw = context.raw_prompt
    enhanced = enhancer(context) if enhancer is not None and context.system_prompt is not None else None
    final = enhanced if enhanced is not None else raw
    limit = context.prompt_max_chars
    fits = final is None or limit is None or len(final) <= limit
    messages = []
    if context.system_prompt is not None:
        messages.append({"role": "system", "content": context.system_prompt})
    messages.append({"role": "user", "content": raw or ""})
    return PromptEnhancementPreview(
        context=context,
        raw_prompt=raw,
        enhanced_prompt=enhanced,
        final_prompt_used=final,
        final_prompt_fits=fits,
        messages=messages,
    )
