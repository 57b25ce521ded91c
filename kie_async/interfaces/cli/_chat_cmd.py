"""``kie-async chat``: ask a Kie.ai chat model, streaming the answer to stdout and the credits to stderr."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kie_async.catalogue.chat_import import import_chat_page
from kie_async.catalogue.chat_specs import ChatSpec, load_chat_spec_file
from kie_async.catalogue.spec_import import SpecImportError, render_yaml
from kie_async.client import BaseSession
from kie_async.core.errors import KieInputError
from kie_async.core.provider_pages import ProviderPage
from kie_async.interfaces.cli._common import add_json_flag, add_offline_flag, check_folder_arg, strict_json
from kie_async.interfaces.cli._live import settings_for
from kie_async.pipeline.chat import chat, chat_stream
from kie_async.wire.chat import ChatResult


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    parser = sub.add_parser(
        "chat",
        help="ask a chat model (GPT, Claude, Gemini, Codex); the answer streams to stdout",
        description="Send PROMPT to a Kie.ai chat model (keys in model_specs/chat, or a provider id such as "
        "claude-sonnet-4-5). The answer streams to stdout; the credits it used go to stderr. "
        "--json prints one result object instead.",
    )
    parser.add_argument("prompt", metavar="PROMPT", help="the user message")
    parser.add_argument("--model", required=True, help="chat model key, alias or provider id")
    parser.add_argument("--system", default=None, metavar="TEXT", help="a system prompt")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an extra field the model's page documents, e.g. reasoning_effort='\"low\"' (repeatable)",
    )
    add_offline_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=_chat)


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--option expects NAME=JSON, got {pair!r}")
        try:
            options[name.strip()] = strict_json(raw)
        except ValueError:
            options[name.strip()] = raw  # a bare word: taken as a string
    return options


def result_summary(result: ChatResult) -> dict[str, Any]:
    """The result as the one JSON object ``--json`` prints (the raw answer left out)."""
    return result.model_dump(mode="json", exclude={"raw"})


async def _chat(args: argparse.Namespace) -> int:
    options = _options(args.option)
    async with settings_for(args) as settings, BaseSession(settings) as kie:
        if args.json:
            result = await chat(kie, args.model, args.prompt, system=args.system, options=options)
            print(json.dumps(result_summary(result), indent=2, ensure_ascii=False))
            return 0 if result.complete else 1
        result = await _stream(kie, args, options)
    credits = "unknown" if result.credits_consumed is None else f"{result.credits_consumed:g}"
    usage = result.usage
    print(
        f"credits: {credits} ({result.model}; {usage.input_tokens or '?'} in, {usage.output_tokens or '?'} out"
        f"{'' if result.complete else '; INCOMPLETE: ' + (result.incomplete_reason or '')})",
        file=sys.stderr,
    )
    return 0 if result.complete else 1


async def _stream(kie: BaseSession, args: argparse.Namespace, options: dict[str, Any]) -> ChatResult:
    out = sys.stdout
    async with chat_stream(kie, args.model, args.prompt, system=args.system, options=options) as stream:
        async for delta in stream:
            if delta.kind == "text":
                out.write(delta.text)
                out.flush()
            elif delta.kind == "tool_call" and delta.tool_name:
                out.write(f"\n[tool call {delta.tool_name}] ")
            elif delta.kind == "tool_call":
                out.write(delta.text)
    out.write("\n")
    out.flush()
    return stream.result


def import_chat_command(page: ProviderPage, args: argparse.Namespace) -> int:
    """``models import`` of a chat page: the chat spec (for ``model_specs/chat``), printed or written to ``--out``."""
    try:
        imported = import_chat_page(page, family=args.family, key=args.key)
        ChatSpec.model_validate(imported.data)
    except (SpecImportError, ValueError) as exc:
        raise KieInputError(f"cannot import {page.source}: {exc}") from None
    text = render_yaml(imported)
    if args.out is None:
        print(text, end="")
        return 0
    out_dir = check_folder_arg(args.out, "--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{imported.key}.yaml"
    if target.exists() and not args.force:
        raise KieInputError(f"{target} exists (it may hold hand edits); pass --force to overwrite it")
    target.write_text(text, encoding="utf-8")
    load_chat_spec_file(target)
    summary = {
        "path": str(target),
        "key": imported.key,
        "kind": "chat",
        "todos": imported.todos,
        "page_notes": imported.page_notes,
    }
    print(json.dumps(summary, indent=2) if args.json else f"wrote {target} (a chat spec; keep it in model_specs/chat)")
    return 0
