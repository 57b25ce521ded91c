"""Commands for LLM agents: ``kie-async mcp`` (the SDK over the Model Context Protocol, stdio or streamable
HTTP) and ``kie-async guides`` (regenerate the per-family agent guides from the specs)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from kie_async.catalogue.guides import stale_guides, write_guides
from kie_async.core.errors import KieInputError
from kie_async.interfaces.cli._common import add_offline_flag, check_folder_arg, default_output_dir, resolve_settings


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    mcp = sub.add_parser(
        "mcp",
        help="serve kie-async to LLM agents over the Model Context Protocol (needs kie-async[mcp])",
        description="An MCP server with tools to list and describe models, validate, estimate, run (budget cap "
        "required; a dry run unless confirm=true), read runs and the balance. Live Kie.ai still needs "
        "KIE_API_KEY and KIE_ALLOW_LIVE=1.",
    )
    mcp.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio",
                     help="stdio (default: the client starts this command) or streamable-http (a long-lived server)")
    mcp.add_argument("--host", default="127.0.0.1", help="streamable-http: address to listen on (default loopback)")
    mcp.add_argument("--port", type=int, default=8765, help="streamable-http: port (default 8765)")
    mcp.add_argument("--out", type=Path, default=None, help="artifacts root (default $KIE_OUTPUT_DIR or ./outputs)")
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
    guides.set_defaults(handler=_guides)


def _default_guides_dir() -> Path:
    checkout = Path(__file__).resolve().parents[3]
    if not (checkout / "docs").is_dir():
        raise KieInputError("no docs/ folder next to this install (not a source checkout)",
                            hint="pass --out FOLDER")
    return checkout / "docs" / "agents"


def _guides(args: argparse.Namespace) -> int:
    folder = args.out or _default_guides_dir()
    if args.check:
        stale = stale_guides(folder)
        for name in stale:
            print(f"stale: {folder / name}")
        if stale:
            print("run `kie-async guides` to regenerate them")
        return 1 if stale else 0
    check_folder_arg(folder, "--out")
    for path in write_guides(folder):
        print(path)
    return 0


def _mcp(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    out = check_folder_arg(args.out or default_output_dir(), "--out")
    from kie_async.interfaces.mcp_server import build_server  # refuses cleanly (exit 2) without the mcp extra

    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port} is not a TCP port (1-65535)")
    return _serve(args, out, build_server)


async def _serve(args: argparse.Namespace, out: Path, build: Any) -> int:
    # stdout is the protocol channel under stdio: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    from kie_async.session import KieSession

    async with resolve_settings(args.offline, generation_seconds=0.5) as settings:
        kie = KieSession(settings)  # opened by the first tool that needs it: the offline tools need no key
        try:
            server = build(kie, out)
            if args.transport == "stdio":
                await server.run_stdio_async()
            else:
                await server.run_streamable_http_async(host=args.host, port=args.port)
        finally:
            await kie.close()
    return 0
