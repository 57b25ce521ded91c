"""Tool arguments checked the way an agent can act on: ``field: problem (fix)``, never pydantic's own text.

Also the two checks an agent must not be able to talk its way around: model keys (with did-you-mean, not a
list of every key) and local media paths, which must lie under a folder the operator allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kie_async.catalogue.normalize import normalize_request
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.catalogue.specs import load_registry

_MEDIA_FIELDS = ("images", "videos", "audios")

_PROBLEMS: dict[str, tuple[str, str]] = {
    "missing": ("missing", "pass {field}"),
    "string_type": ("must be text", "pass a string"),
    "list_type": ("must be a list", "pass a JSON array"),
    "dict_type": ("must be an object", "pass a JSON object"),
    "bool_type": ("must be true or false", "pass true or false"),
    "bool_parsing": ("must be true or false", "pass true or false"),
    "int_type": ("must be a whole number", "pass a whole number"),
    "int_parsing": ("must be a whole number", "pass a whole number"),
    "float_type": ("must be a number", "pass a number"),
    "float_parsing": ("must be a number", "pass a number"),
    "finite_number": ("must be a finite number", "pass a finite number"),
    "extra_forbidden": ("is not an accepted field", "drop it; see the tool's input schema"),
}


class ArgumentProblem(Exception):
    """One argument problem, already worded ``field: problem (fix)``."""


def field_path(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


def describe_validation_error(exc: ValidationError, *, drop_prefix: int = 0) -> str:
    """The first problem of a pydantic error as ``field: problem (fix)`` (``drop_prefix`` trims wrapper locs)."""
    first = exc.errors()[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tagged-")))]
    field = field_path(loc[drop_prefix:] or loc)
    problem, fix = _PROBLEMS.get(
        first["type"], ("has a value of the wrong type or range", "see the tool's input schema for {field}")
    )
    return f"{field}: {problem} (fix: {fix.format(field=field)})"


def did_you_mean(word: str, choices: Iterable[str], *, n: int = 3) -> str:
    """`` (did you mean 'a' or 'b'?)``-style suffix text, or '' when nothing is close."""
    close = difflib.get_close_matches(word.strip().lower(), list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"


def check_model_key(model_key: str) -> None:
    """Refuse an unknown or ambiguous model key, suggesting the nearest keys (not listing them all)."""
    registry = load_registry()
    found = registry.candidates(model_key)
    if len(found) == 1:
        return
    if found:
        keys = " or ".join(repr(s.key) for s in found)
        raise ArgumentProblem(f"model_key: {model_key!r} is ambiguous (fix: use {keys})")
    names = [*registry.model_keys(), *(a.lower() for s in registry.specs.values() for a in s.aliases)]
    hint = did_you_mean(model_key, names)
    fix = f"{hint} Otherwise call list_models" if hint else "call list_models for the model keys"
    raise ArgumentProblem(f"model_key: {model_key!r} is not a known model (fix: {fix})")


def check_unknown_arguments(tool: str, arguments: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """An argument the tool does not take is refused, not silently ignored (a 'budget_credits' an agent thought
    capped its spending, say)."""
    names = list(accepted)
    for name in arguments:
        if name in names:
            continue
        if name in ("budget_credits", "allow_unknown_cost", "unknown_cost_ceiling"):
            raise ArgumentProblem(
                f"{name}: not an argument of {tool}; spending limits and unknown prices are set by the server's "
                f"operator when starting it, not by a tool call (fix: drop {name}; the server_limits tool shows them)"
            )
        hint = did_you_mean(name, names)
        raise ArgumentProblem(f"{name}: not an argument of {tool} (fix: {hint or 'drop it'})")


def as_request(arguments: dict[str, Any]) -> RawUserRequest:
    """A tool's arguments as a request; a shape problem becomes one ``field: problem (fix)`` error."""
    data = {k: v for k, v in arguments.items() if v is not None}
    try:
        return RawUserRequest.model_validate(data)
    except ValidationError as exc:
        raise ArgumentProblem(describe_validation_error(exc)) from None


def confine_media(request: RawUserRequest, roots: list[Path]) -> RawUserRequest:
    """The request with every local media path resolved (symlinks and ``..`` followed) and checked to lie under
    one of ``roots``; URLs pass. With no roots, any local path is refused."""
    normalized = normalize_request(request)
    local = {m.id: m.value for m in normalized.media if m.source_type == "local_path" and m.value}
    if not local:
        return request
    update: dict[str, list[Any]] = {name: list(getattr(request, name)) for name in _MEDIA_FIELDS}
    for media_id, value in local.items():
        real = _inside(media_id, value, roots)
        field, _, rest = media_id.partition("[")
        if field not in update or not rest.rstrip("]").isdigit() or int(rest.rstrip("]")) >= len(update[field]):
            raise ArgumentProblem(
                f"{media_id}: a local file given outside images, videos or audios (fix: pass it in one of those lists)"
            )
        update[field][int(rest.rstrip("]"))] = str(real)
    return request.model_copy(update=update)


def _inside(field: str, value: str, roots: list[Path]) -> Path:
    if not roots:
        raise ArgumentProblem(
            f"{field}: local files are not allowed on this server (fix: pass an http(s) URL, or ask the server's "
            f"operator to allow a folder with --media-root)"
        )
    try:
        real = Path(value).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise ArgumentProblem(
            f"{field}: {value!r} does not exist or cannot be read (fix: pass a file under {_roots_text(roots)})"
        ) from None
    if not any(real.is_relative_to(root) for root in roots):
        raise ArgumentProblem(
            f"{field}: {value!r} lies outside the folders this server may read (fix: pass a file "
            f"under {_roots_text(roots)}, or an http(s) URL)"
        )
    return real


def _roots_text(roots: list[Path]) -> str:
    return " or ".join(str(r) for r in roots)
