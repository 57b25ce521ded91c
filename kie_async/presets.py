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
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kie_async._data import data_dir
from kie_async.errors import KieConfigError
from kie_async.normalize import normalize_request
from kie_async.request_models import NormalizedRequest, RawUserRequest, ValidationResult
from kie_async.specs import ModelRegistry, load_registry

PRESET_DIR_ENV = "KIE_PROMPT_PRESETS_DIR"
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n?(.*)\Z", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


class PresetError(KieConfigError):
    """A preset file is malformed or a requested preset does not exist."""

    hint = "check the preset key and the front matter (key, version, model_keys, input_patterns)"


class PromptPreset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
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
    return tuple(presets)


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
    for folder in preset_folders(preset_dirs):
        if not folder.is_dir():
            raise PresetError(f"preset folder {folder} does not exist")
        for preset in _load_dir(str(folder.resolve())):
            merged[preset.key] = preset
    return merged


def clear_preset_cache() -> None:
    _load_dir.cache_clear()


def _media_summary(normalized: NormalizedRequest) -> str:
    if not normalized.media:
        return "no input media"
    counts = Counter(f"{m.kind} ({m.role})" if m.role else m.kind for m in normalized.media)
    return ", ".join(f"{n} {label}" for label, n in counts.items())


def render_preset(preset: PromptPreset, variables: Mapping[str, object]) -> tuple[str, list[str]]:
    """Fill ``{{name}}`` placeholders; unknown names stay as written and are reported."""
    unknown: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return str(variables[name])
        unknown.append(name)
        return match.group(0)

    return _PLACEHOLDER.sub(fill, preset.body), unknown


def _as_normalized(request: RawUserRequest | NormalizedRequest | ValidationResult,
                   registry: ModelRegistry | None) -> NormalizedRequest:
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
) -> PromptContext:
    """Pick the requested preset (or the model's default for the detected input pattern) and render it."""
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
    base = {"model_key": normalized.model_key, "task_mode": normalized.task_mode, "input_pattern": pattern,
            "raw_prompt": normalized.raw_prompt, "available_presets": fitting,
            "prompt_max_chars": spec.prompt.max_chars if spec else None}
    if wanted is None:
        return PromptContext(**base, warnings=["no preset for this model and input pattern"])
    preset = presets.get(wanted)
    if preset is None:
        raise PresetError(f"no prompt preset {wanted!r}; available for {normalized.model_key}: {fitting}")
    if not preset.fits(normalized.model_key, pattern):
        warnings.append(f"preset {wanted!r} is written for {preset.model_keys} / {preset.input_patterns}, "
                        f"not {normalized.model_key} / {pattern}")
    variables = {
        "model_key": normalized.model_key,
        "model_label": spec.label if spec else normalized.model_key,
        "task_mode": normalized.task_mode or "",
        "input_pattern": pattern or "",
        "prompt_max_chars": spec.prompt.max_chars if spec and spec.prompt.max_chars else "the model's limit",
        "media_summary": _media_summary(normalized),
    }
    system, unknown = render_preset(preset, variables)
    warnings.extend(f"unknown placeholder {{{{{name}}}}} left as written" for name in unknown)
    return PromptContext(**base, preset_key=preset.key, preset_version=preset.version,
                         preset_source=preset.source_path, system_prompt=system, warnings=warnings)


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
    update: dict[str, Any] = {"final_prompt_used": final_prompt,
                              "enhanced_prompt": enhanced_prompt if enhanced_prompt is not None else final_prompt}
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
    return PromptEnhancementPreview(context=context, raw_prompt=raw, enhanced_prompt=enhanced,
                                    final_prompt_used=final, final_prompt_fits=fits, messages=messages)
