"""Commands for LLM agents: ``kie-async mcp`` (the SDK over the Model Context Protocol, stdio or streamable
HTTP) and ``kie-async guides`` (regenerate the per-family agent guides from the specs)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kie_async.catalogue.guides import stale_guides, write_guides
from kie_async.core.errors import KieInputError
from kie_async.interfaces.cli._common import add_offline_flag, check_folder_arg, default_output_dir
from kie_async.interfaces.cli._live import settings_for
from kie_async.interfaces.mcp.limits import McpLimits
from kie_async.interfaces.mcp.spending import FileSpendingStore, default_state_path


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    mcp = sub.add_parser(
        "mcp",
        help="serve kie-async to LLM agents over the Model Context Protocol (needs kie-async[mcp])",
        description="An MCP server with tools to list and describe models, validate, estimate, run (a dry run "
        "that returns a quote, then confirm=true with that quote), resume an incomplete run, read runs and the "
        "balance. Spending is yours, not the agent's: without --budget nothing is bought. Live Kie.ai still "
        "needs KIE_API_KEY and KIE_ALLOW_LIVE=1.",
    )
    mcp.add_argument(
        "--transport",
        choices=["stdio", "streamable-http"],
        default="stdio",
        help="stdio (default: the client starts this command) or streamable-http (a long-lived server)",
    )
    mcp.add_argument("--host", default="127.0.0.1", help="streamable-http: address to listen on (default loopback)")
    mcp.add_argument("--port", type=int, default=8765, help="streamable-http: port (default 8765)")
    mcp.add_argument("--out", type=Path, default=None, help="artifacts root (default $KIE_OUTPUT_DIR or ./outputs)")
    mcp.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="CREDITS",
        help="credits the server may spend over its life, kept across restarts in a state file under "
        "--out (default: none, so run_request only dry-runs)",
    )
    mcp.add_argument(
        "--media-root",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder local media inputs may come from (repeatable; default: none, only URLs)",
    )
    mcp.add_argument(
        "--allow-unknown-cost",
        action="store_true",
        help="let the agent buy requests without a price in the pricing snapshot",
    )
    mcp.add_argument(
        "--unknown-cost-ceiling",
        type=float,
        default=None,
        metavar="CREDITS",
        help="credits the budget reserves for each unpriced request (required with --budget and --allow-unknown-cost)",
    )
    mcp.add_argument(
        "--quote-ttl",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long a dry run's quote may be confirmed (default 600)",
    )
    add_offline_flag(mcp)
    mcp.set_defaults(handler=_mcp)

    guides = sub.add_parser(
        "guides",
        help="regenerate the agent guides (docs/agents/) from model_specs/, pricing/ and prompt_presets/",
        description="Write one markdown guide per model family from the bundled specs, prices and presets. "
        "Run it after adding or changing a model; --check only reports stale guides (exit 1).",
    )
    guides.add_argument("--out", type=Path, default=None, help="folder (default: docs/agents of this checkout)")
    guides.add_argument("--check", action="store_true", help="write nothing; exit 1 if a guide is stale")
    guides.add_argument("--json", action="store_true", help="machine-readable output")
    guides.set_defaults(handler=_guides)


def _default_guides_dir() -> Path:
    checkout = Path(__file__).resolve().parents[3]
    if not (checkout / "docs").is_dir():
        raise KieInputError("no docs/ folder next to this install (not a source checkout)", hint="pass --out FOLDER")
    return checkout / "docs" / "agents"


def _guides(args: argparse.Namespace) -> int:
    folder = args.out or _default_guides_dir()
    if args.check:
        stale = stale_guides(folder)
        if args.json:
            print(json.dumps({"folder": str(folder), "stale": [str(folder / name) for name in stale]}, indent=2))
            return 1 if stale else 0
        for name in stale:
            print(f"stale: {folder / name}")
        if stale:
            print("run `kie-async guides` to regenerate them")
        return 1 if stale else 0
    check_folder_arg(folder, "--out")
    written = write_guides(folder)
    if args.json:
        print(json.dumps({"folder": str(folder), "written": [str(path) for path in written]}, indent=2))
        return 0
    for path in written:
        print(path)
    return 0


def _mcp(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    out = check_folder_arg(args.out or default_output_dir(), "--out")
    from kie_async.interfaces.mcp_server import build_server  # refuses cleanly (exit 2) without the mcp extra

    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port} is not a TCP port (1-65535)")
    return _serve(args, out, build_server, _limits(args))


def _limits(args: argparse.Namespace) -> McpLimits:
    """The operator's flags as the server's limits; a bad combination stops the command before it serves."""
    for root in args.media_root:
        if not root.expanduser().is_dir():
            raise KieInputError(f"--media-root {root}: not a folder", hint="pass an existing folder")
    try:
        return McpLimits(
            budget_credits=args.budget,
            media_roots=args.media_root,
            allow_unknown_cost=args.allow_unknown_cost,
            unknown_cost_ceiling=args.unknown_cost_ceiling,
            quote_ttl_seconds=args.quote_ttl,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "the flags"
        flag = {"--budget-credits": "--budget", "--quote-ttl-seconds": "--quote-ttl"}.get(flag, flag)
        raise KieInputError(
            f"{flag}: {first['msg'].removeprefix('Value error, ')}", hint="see kie-async mcp --help"
        ) from None


async def _serve(args: argparse.Namespace, out: Path, build: Any, limits: McpLimits) -> int:
    # stdout is the protocol channel under stdio: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    from kie_async.session import KieSession

    store = FileSpendingStore.open(default_state_path(out)) if limits.budget_credits is not None else None
    async with settings_for(args, out, generation_seconds=0.5, check_live=False) as settings:
        kie = KieSession(settings)  # opened by the first tool that needs it: the offline tools need no key
        try:
            server = build(kie, out, limits=limits, store=store)
            if args.transport == "stdio":
                await server.run_stdio_async()
            else:
                await server.run_streamable_http_async(host=args.host, port=args.port)
        finally:
            await kie.close()
            if store is not None:
                store.close()
    return 0
