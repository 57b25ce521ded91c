"""Which module defines each ``kie-async`` subcommand, and its one-line help.

The command line imports only the module of the command it runs (a subcommand module pulls in the session,
the pipeline, rich...); ``kie-async --help`` lists every command from this table without importing any of them.
``tests/test_cli_startup.py`` checks that the table matches what the modules register.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this module is on the path of `kie-async --version`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PACKAGE = "kie_async.interfaces.cli"
MAIN_MODULE = f"{PACKAGE}._main"
"""The parser and the dispatcher: loaded for every command except a bare ``--version``."""

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, help)
    "demo": (
        "_core_cmd",
        "offline tour: embedded emulator, credits, one image through the whole pipeline, a run folder",
    ),
    "credits": ("_core_cmd", "show the account's remaining credits"),
    "run": ("_run_cmd", "validate, price, upload, submit, wait, download and record one request"),
    "run-batch": ("_run_cmd", "run every request in a JSONL file (one RawUserRequest, or a chat call, per line)"),
    "receive-callbacks": (
        "_callbacks_cmd",
        "receive Kie.ai callbacks and settle a batch journal's uncertain requests (until Ctrl-C)",
    ),
    "worker": (
        "_worker_cmd",
        "run a Celery or Taskiq worker for kie-async jobs (each request bought once, however often delivered)",
    ),
    "emulator": ("_emulator_cmd", "run a local Kie.ai emulator (no key, no network) until Ctrl-C"),
    "models": ("_models_cmd", "list model keys by family (media and chat); show one; import a provider docs page"),
    "validate": ("_check_cmd", "check a request without spending credits"),
    "estimate": ("_check_cmd", "estimate a request's cost and gate it on balance/budget"),
    "pricing": ("_models_cmd", "pricing snapshots"),
    "artifacts": ("_artifacts_cmd", "list, show and repair local run artifacts"),
    "mcp": ("_agents_cmd", "serve kie-async to LLM agents over the Model Context Protocol (needs kie-async[mcp])"),
    "ledger": ("_ledger_cmd", "inspect and repair the shared purchase ledger"),
    "chat": ("_chat_cmd", "ask a chat model (GPT, Claude, Gemini, Codex); the answer streams to stdout"),
    "guides": (
        "_agents_cmd",
        "regenerate the agent guides (docs/agents/) from model_specs/, pricing/ and prompt_presets/",
    ),
}


ACTIONS: dict[str, tuple[str, str]] = {
    # "command action": (module, handler): actions a command's own module leaves to another, heavier one
    "models import": ("_catalogue_files_cmd", "models_import_command"),
    "pricing refresh": ("_catalogue_files_cmd", "pricing_refresh_command"),
}


def load_action(action: str) -> Callable[..., Any]:
    """The handler of ``action`` (a key of :data:`ACTIONS`), its module imported now."""
    module, handler = ACTIONS[action]
    found: Callable[..., Any] = getattr(importlib.import_module(f"{PACKAGE}.{module}"), handler)
    return found


def module_of(command: str) -> str:
    """The full module name that registers ``command`` (a key of :data:`COMMANDS`)."""
    return f"{PACKAGE}.{COMMANDS[command][0]}"


def all_modules() -> list[str]:
    """Every subcommand module once, in the order ``--help`` lists their commands."""
    return list(dict.fromkeys(module_of(name) for name in COMMANDS))
