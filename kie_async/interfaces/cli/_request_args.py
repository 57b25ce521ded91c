"""The request options that ``validate``, ``estimate`` and ``run`` share, and the request they build."""

from __future__ import annotations

import argparse
import json
from typing import Any, get_args
from urllib.parse import urlsplit

from kie_async.catalogue.request_models import MediaInput, MediaItem, RawUserRequest
from kie_async.catalogue.specs import MediaRole
from kie_async.interfaces.cli._common import json_kind, strict_json

_ROLES: tuple[str, ...] = get_args(MediaRole)


def request_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model key or alias (see `kie-async models`)")
    parser.add_argument("--prompt", default=None)
    parser.add_argument("--task-mode", default=None, help="force a task mode (default: detect from media)")
    for kind in ("image", "video", "audio"):
        parser.add_argument(
            f"--{kind}",
            action="append",
            default=[],
            metavar="[ROLE=]SRC",
            help=f"{kind} path or URL, optionally prefixed with first_frame=, last_frame= or reference=; repeatable",
        )
    parser.add_argument(
        "--option",
        action="append",
        type=_option_arg,
        default=[],
        metavar="KEY=VALUE",
        help="model option (JSON values allowed for lists); repeatable",
    )
    parser.add_argument(
        "--extra-option",
        action="append",
        type=_option_arg,
        default=[],
        metavar="KEY=VALUE",
        help="a field Kie.ai takes that the spec does not know yet: sent verbatim, unchecked, "
        "with a warning; repeatable",
    )
    parser.add_argument(
        "--multi-prompt", type=_multi_prompt_arg, default=None, help="JSON list of {prompt, duration} shots"
    )
    parser.add_argument(
        "--callback-url", type=callback_url_arg, default=None, help="http(s) URL Kie.ai calls when the task ends"
    )
    parser.add_argument("--no-file-check", action="store_true", help="do not look at local files")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _media(values: list[str]) -> list[MediaItem]:
    items: list[MediaItem] = []
    for raw in values:
        role, sep, rest = raw.partition("=")
        if sep and role in _ROLES and rest:
            items.append(MediaInput.model_validate({"source": rest, "role": role}))
        else:
            items.append(raw)
    return items


def _option_value(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    return text


def _option_arg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as an argparse type, so a malformed one is a usage error naming ``--option``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _option_value(value)


def _multi_prompt_arg(text: str) -> list[dict[str, Any]]:
    """The ``--multi-prompt`` JSON, checked for shape here: a list of objects, else a usage error."""
    try:
        shots = strict_json(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not isinstance(shots, list):
        raise argparse.ArgumentTypeError(
            f'expected a JSON list of {{"prompt": ..., "duration": ...}} objects, got {json_kind(shots)}'
        )
    for index, shot in enumerate(shots):
        if not isinstance(shot, dict):
            raise argparse.ArgumentTypeError(f"item {index} should be an object, got {json_kind(shot)}")
    return shots


def callback_url_arg(text: str) -> str:
    """An http(s) URL with a host that parses (``http://[::1`` used to be submitted, then crash the callback)."""
    try:
        parts = urlsplit(text)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a valid URL ({exc}): {text!r}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL with a host, got {text!r}")
    return text


def build_request(args: argparse.Namespace) -> RawUserRequest:
    options: dict[str, Any] = dict(args.option)
    multi: list[dict[str, Any]] | None = args.multi_prompt
    return RawUserRequest(
        model_key=args.model,
        task_mode=args.task_mode,
        prompt=args.prompt,
        images=_media(args.image),
        videos=_media(args.video),
        audios=_media(args.audio),
        options=options,
        callback_url=args.callback_url,
        multi_prompt=multi,
        extra_options=dict(getattr(args, "extra_option", [])),
    )
