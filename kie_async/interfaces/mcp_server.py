"""``kie-async mcp``: the SDK as Model Context Protocol tools, so an LLM agent can drive it safely.

An agent is a careless caller by construction, and may be a prompt-injected one: it retries, guesses option
names and may loop. So every tool goes through the same gates a person's call does (validation, pricing,
preflight, the session's live opt-in), and spending is the operator's, not the agent's: the server's
``--budget`` is a total over its life (kept across restarts), nothing is bought without it, a purchase needs
the quote of its own dry run, an identical call resumes a paid but undelivered task instead of buying it
again, and local media must lie under an operator-allowed ``--media-root``. Errors come back as MCP tool
errors reading ``field: problem (fix)``, so the agent can correct itself instead of guessing. Needs the
optional extra: ``pip install 'kie-async[mcp]'``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import ValidationError

from kie_async.artifacts.query import load_run, query_runs
from kie_async.artifacts.settings import ArtifactSettings
from kie_async.catalogue.preflight import run_preflight
from kie_async.catalogue.request_models import RawUserRequest, ValidationResult
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.core.data import data_dir
from kie_async.core.errors import KieConfigError, KieError, KieInputError
from kie_async.core.settings import KieSettings
from kie_async.core.spelling import MCP
from kie_async.interfaces.mcp.arguments import (
    ArgumentProblem,
    as_request,
    check_model_key,
    check_unknown_arguments,
    confine_media,
    describe_validation_error,
)
from kie_async.interfaces.mcp.limits import McpLimits
from kie_async.interfaces.mcp.purchases import Purchases
from kie_async.interfaces.mcp.spending import FileSpendingStore, SpendingStore, default_state_path
from kie_async.interfaces.mcp.views import kie_error, preflight_view, refuse_unsubmittable, tool_error, validation_view

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from kie_async.session import KieSession

INSTRUCTIONS = (
    "kie-async generates images and videos on Kie.ai, paid in credits (1 credit = $0.005). Work in this order: "
    "list_models / describe_model to learn a model's fields, validate until it is ready, estimate, then "
    "run_request: a dry run first (it returns a quote_id), then the same call with confirm=true and that quote_id "
    "once the user agreed to the price. Spending is capped by the server's operator (server_limits shows what is "
    "left); an `incomplete` run is collected with resume_run, never bought again. Errors read 'field: problem "
    "(fix)'; correct and call again."
)

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


def _missing_extra() -> KieInputError:
    return KieInputError("the MCP server needs the 'mcp' package", hint="pip install 'kie-async[mcp]'")


def _guarded(fn: _F) -> _F:
    """A tool body whose own errors reach the agent as ``field: problem (fix)`` text, never a traceback."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except ArgumentProblem as exc:
            raise tool_error(str(exc)) from None
        except KieError as exc:
            raise kie_error(exc) from None

    return cast(_F, wrapper)


_REQUEST_ARGS = ("model_key", "prompt", "images", "videos", "audios", "options", "task_mode", "extra_options")


def _picked(arguments: dict[str, Any]) -> dict[str, Any]:
    """The request fields among a tool's locals (which also hold closure names such as the settings)."""
    return {k: arguments[k] for k in _REQUEST_ARGS if k in arguments}


async def _checked_request(arguments: dict[str, Any], limits: McpLimits) -> tuple[RawUserRequest, ValidationResult]:
    """The request of a tool call: model key known, local media inside the allowed folders, validated."""
    check_model_key(str(arguments.get("model_key", "")))
    request = confine_media(as_request(_picked(arguments)), limits.media_roots)
    if any(getattr(request, name) for name in ("images", "videos", "audios")):
        validation = await asyncio.to_thread(validate_request, request)  # stats and reads the files
    else:
        validation = validate_request(request)
    return request, validation


def build_server(
    kie: KieSession, artifacts_root: Path, *, limits: McpLimits | None = None, store: SpendingStore | None = None
) -> MCPServer[Any]:
    """The MCP server object. Every tool shares ``kie``: one connection pool and, above all, one rate
    limiter, so an agent firing calls in parallel stays under Kie.ai's createTask limit as a single client
    would. The tools that need the network open it on first use (``open`` is idempotent), so the offline
    tools work without a key or the live opt-in; close it after the server stops.

    ``limits`` are the operator's (default: no budget, so nothing is bought; no local media). With a budget,
    ``store`` keeps the spending across restarts (default: a file under ``artifacts_root``, owned by this
    process until it exits; pass your own to close it yourself).
    """
    server = _new_server()
    limits = (limits or McpLimits()).resolved()
    if store is None and limits.budget_credits is not None:
        store = FileSpendingStore.open(default_state_path(artifacts_root))
    open_session = _session_opener(kie)
    purchases = Purchases(kie, open_session, ArtifactSettings(root=artifacts_root), limits, store)
    _add_model_tools(server)
    _add_request_tools(server, limits)
    _add_run_tools(server, purchases)
    _add_stored_run_tools(server, artifacts_root)
    _add_account_tools(server, kie, open_session)
    _add_resources(server)
    return server


def _new_server() -> MCPServer[Any]:
    """An MCPServer whose argument errors read ``field: problem (fix)`` (not pydantic's text) and which refuses
    arguments a tool does not take instead of ignoring them."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
    except ImportError:
        raise _missing_extra() from None

    class KieMCPServer(MCPServer[Any]):
        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
            tool = self._tool_manager.get_tool(name)
            if tool is not None:
                try:
                    check_unknown_arguments(name, arguments, tool.parameters.get("properties", {}))
                except ArgumentProblem as exc:
                    raise ToolError(f"Error executing tool {name}: {exc}") from None
            try:
                return await super().call_tool(name, arguments, context)
            except UnexpectedToolError:
                raise
            except ToolError as exc:
                if isinstance(exc.__cause__, ValidationError):
                    why = describe_validation_error(exc.__cause__)
                    raise ToolError(f"Error executing tool {name}: {why}") from None
                raise

    return KieMCPServer(name="kie-async", instructions=INSTRUCTIONS)


def _check_live(settings: KieSettings) -> None:
    """Refuse the real Kie.ai before the session would, naming what an MCP server's user can change."""
    if not settings.is_live or (settings.allow_live and settings.key_value()):
        return
    missing = " and ".join(
        name
        for name, unset in (("KIE_API_KEY", not settings.key_value()), ("KIE_ALLOW_LIVE=1", not settings.allow_live))
        if unset
    )
    raise KieConfigError(
        f"the real Kie.ai needs {missing} in this server's environment (it spends credits)",
        hint="to spend nothing, start the server as `kie-async mcp --offline` (the embedded emulator); to go live, "
        "set them in the client's config for this server and restart it",
    )


def _session_opener(kie: KieSession) -> Callable[[], Awaitable[None]]:
    """Open ``kie`` on first use; two first calls at once must not open two pools (open awaits with a coordinator)."""
    opening = asyncio.Lock()

    async def open_session() -> None:
        async with opening:
            _check_live(kie.settings)  # in this interface's words: the server's environment, or --offline
            await kie.open()

    return open_session


def _add_model_tools(server: MCPServer[Any]) -> None:
    """``list_models`` and ``describe_model``: the catalogue, offline."""

    @server.tool()
    def list_models() -> dict[str, Any]:
        """Every model key with its family, output kind, task modes and aliases."""
        registry = load_registry()
        return {
            "models": [
                {
                    "key": s.key,
                    "label": s.label,
                    "family": s.family,
                    "output_kind": s.output_kind,
                    "task_modes": [m.name for m in s.task_modes],
                    "aliases": s.aliases,
                }
                for s in registry.specs.values()
            ]
        }

    @server.tool()
    @_guarded
    async def describe_model(model_key: str) -> dict[str, Any]:
        """One model's options (types, allowed values, defaults), media slots, limits and verification notes."""
        check_model_key(model_key)
        spec = load_registry().candidates(model_key)[0]
        return spec.model_dump(mode="json", exclude_none=True, exclude={"source_file"})


def _add_request_tools(server: MCPServer[Any], limits: McpLimits) -> None:
    """``validate`` and ``estimate``: a request checked and priced, offline; nothing is bought."""

    @server.tool()
    @_guarded
    async def validate(
        model_key: str,
        prompt: str | None = None,
        images: list[str] | None = None,
        videos: list[str] | None = None,
        audios: list[str] | None = None,
        options: dict[str, Any] | None = None,
        task_mode: str | None = None,
        extra_options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check a request without spending anything: state, problems (field + fix), defaults filled."""
        _, validation = await _checked_request(locals(), limits)
        return validation_view(validation)

    @server.tool()
    @_guarded
    async def estimate(
        model_key: str,
        prompt: str | None = None,
        images: list[str] | None = None,
        videos: list[str] | None = None,
        audios: list[str] | None = None,
        options: dict[str, Any] | None = None,
        task_mode: str | None = None,
        extra_options: dict[str, Any] | None = None,
        budget_credits: float | None = None,
    ) -> dict[str, Any]:
        """Price a request from the pricing snapshot (credits and USD) and gate it on an optional budget of your
        own (planning only: what the server may spend is its operator's budget, see server_limits)."""
        budget = budget_credits
        _, validation = await _checked_request(locals(), limits)
        refuse_unsubmittable(validation)
        preflight = await run_preflight(
            validation,
            budget_credits=budget,
            spelling=MCP,
            allow_unknown_cost=budget is None or limits.allow_unknown_cost,
        )
        return {"validation": validation_view(validation), "preflight": preflight_view(preflight)}


def _add_run_tools(server: MCPServer[Any], purchases: Purchases) -> None:
    """``run_request`` (the one tool that buys), ``resume_run`` and ``server_limits``."""

    @server.tool()
    @_guarded
    async def run_request(
        model_key: str,
        prompt: str | None = None,
        images: list[str] | None = None,
        videos: list[str] | None = None,
        audios: list[str] | None = None,
        options: dict[str, Any] | None = None,
        task_mode: str | None = None,
        extra_options: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        confirm: bool = False,
        quote_id: str | None = None,
    ) -> dict[str, Any]:
        """Run a request end to end. Without confirm=true this is a dry run: it validates, prices and checks the
        balance and the server's budget, buys nothing, and returns a quote_id. To buy, repeat the same call with
        confirm=true and that quote_id. If a paid run ends `incomplete`, repeating the call (or resume_run)
        collects the same task without buying again. Live Kie.ai also needs KIE_ALLOW_LIVE=1 on the server."""
        request, validation = await _checked_request(locals(), purchases.limits)
        refuse_unsubmittable(validation)
        await purchases.open_session()  # refuses the real Kie.ai without KIE_ALLOW_LIVE: a tool error naming the fix
        if not confirm:
            return await purchases.dry_run(validation)
        try:
            return await purchases.confirmed(request, validation, list(tags or []), quote_id)
        except ValueError as exc:
            if isinstance(exc, KieError):
                raise
            raise tool_error(f"request: {exc} (fix: correct the named value and call again)") from None

    @server.tool()
    @_guarded
    async def resume_run(run_id: str | None = None, task_id: str | None = None) -> dict[str, Any]:
        """Collect a run that was paid for but ended `incomplete` (by its run_id or task_id); never buys."""
        wanted = run_id or task_id
        if not wanted or not wanted.strip():
            raise ArgumentProblem("run_id: missing (fix: pass the run_id or task_id of an `incomplete` run)")
        return await purchases.resume(wanted)

    @server.tool()
    async def server_limits() -> dict[str, Any]:
        """What this server may spend (its operator's budget, spent and left), and its rules for media and
        unpriced requests. Set by the operator when starting the server; no tool argument changes them."""
        limits = purchases.limits
        return {
            "budget": purchases.budget_view(),
            "media_roots": [str(r) for r in limits.media_roots],
            "unpriced_requests": "allowed" if limits.allow_unknown_cost else "refused",
            "unknown_cost_ceiling": limits.unknown_cost_ceiling,
            "quote_ttl_seconds": limits.quote_ttl_seconds,
        }


def _add_stored_run_tools(server: MCPServer[Any], artifacts_root: Path) -> None:
    """``get_run`` and ``query_runs``: the runs stored under the artifacts root, offline."""

    @server.tool()
    async def get_run(run_id: str) -> dict[str, Any]:
        """A stored run's manifest: status, prompts, options, outputs (paths and URLs), tags and notes."""
        if not run_id.strip() or any(c in run_id for c in "/\\") or run_id.startswith("."):
            raise tool_error(f"run_id: {run_id!r} is not a run id (fix: use a run_id from run_request or query_runs)")
        try:
            run = await load_run(artifacts_root, run_id)
        except KieError as exc:
            raise kie_error(exc) from None
        view: dict[str, Any] = run.manifest.model_dump(mode="json", exclude_none=True)
        view["run_dir"] = str(run.run_dir)
        return view

    @server.tool(name="query_runs")
    async def query_runs_tool(
        model: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        since: str | None = None,
        limit: int = 20,
    ) -> dict[str, Any]:
        """Stored runs matching every filter, newest first (since: ISO time or '2h', '3d')."""
        if limit < 1 or limit > 500:
            raise tool_error(f"limit: {limit} is out of range (fix: a whole number from 1 to 500)")
        try:
            entries = await query_runs(artifacts_root, model=model, status=status, since=since, limit=limit, tag=tag)
        except (KieError, ValueError) as exc:
            raise tool_error(f"{exc} (fix: check the filters)") from None
        return {"runs": [e.model_dump(mode="json", exclude_none=True) for e in entries]}


def _add_account_tools(server: MCPServer[Any], kie: KieSession, open_session: Callable[[], Awaitable[None]]) -> None:
    """``credits``: the account's balance (opens the session)."""

    @server.tool()
    async def credits() -> dict[str, Any]:
        """The account's credit balance (and its USD value at $0.005 a credit)."""
        try:
            await open_session()
            balance = await kie.get_credits()
        except KieError as exc:
            raise kie_error(exc) from None
        return {"credits": balance.credits, "usd": round(balance.credits * 0.005, 4)}


def _add_resources(server: MCPServer[Any]) -> None:
    """Every model spec and docs page as a text resource."""
    for spec_path in sorted(data_dir("model_specs").glob("*.yaml")):
        _add_text_resource(
            server, f"kie://models/{spec_path.stem}", spec_path, "application/yaml", f"model spec {spec_path.stem}"
        )
    for rel, page in _doc_pages():
        _add_text_resource(server, f"kie://docs/{rel}", page, "text/markdown", f"docs page {rel}")


def _doc_pages() -> list[tuple[str, Path]]:
    """Docs pages (and the generated agent guides) by relative name; none when the docs are not installed."""
    try:
        root = data_dir("docs")
    except FileNotFoundError:
        return []
    return sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*.md") if "examples" not in p.parts)


def _add_text_resource(server: MCPServer[Any], uri: str, path: Path, mime: str, title: str) -> None:
    def read() -> str:
        return path.read_text(encoding="utf-8")

    server.resource(uri, name=uri.rsplit("/", 1)[-1], title=title, mime_type=mime)(read)
