"""``kie-async mcp``: the SDK as Model Context Protocol tools, so an LLM agent can drive it safely.

An agent is a careless caller by construction: it retries, guesses option names and may loop. So every
tool goes through the same gates a person's call does (validation, pricing, preflight, the session's
live opt-in), and ``run`` adds two of its own: a budget cap is a required argument, and nothing is bought
unless the call says ``confirm: true`` (without it, ``run`` is a dry run that reports what would happen).
Errors come back as MCP tool errors whose text names the field and the fix, so the agent can correct
itself instead of guessing. Needs the optional extra: ``pip install 'kie-async[mcp]'``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from kie_async.artifacts.query import load_run, query_runs
from kie_async.artifacts.settings import ArtifactSettings
from kie_async.catalogue.preflight import PreflightResult, run_preflight
from kie_async.catalogue.request_models import RawUserRequest, ValidationResult
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request
from kie_async.core.data import data_dir
from kie_async.core.errors import KieError, KieInputError
from kie_async.pipeline.run import run_pipeline
from kie_async.pipeline.run_models import PipelineOptions, RunResult

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from kie_async.session import KieSession

INSTRUCTIONS = (
    "kie-async generates images and videos on Kie.ai, paid in credits (1 credit = $0.005). Work in this order: "
    "list_models / describe_model to learn a model's fields, validate_request until it is ready, "
    "estimate_cost, then run_request with a budget_credits cap: a dry run first, then the same call with "
    "confirm=true once the user agreed to the price. Errors name the field and the fix; correct and call again."
)


def _missing_extra() -> KieInputError:
    return KieInputError(
        "the MCP server needs the 'mcp' package", hint="pip install 'kie-async[mcp]'"
    )


def _tool_error(message: str) -> Exception:
    from mcp.server.mcpserver.exceptions import ToolError

    return ToolError(message)


def _field_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


def _as_request(arguments: dict[str, Any]) -> RawUserRequest:
    """A tool's arguments as a request; a shape problem becomes one error naming the field."""
    data = {k: v for k, v in arguments.items() if v is not None}
    try:
        return RawUserRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = _field_path(tuple(first["loc"]))
        if first["type"] == "extra_forbidden":
            fields = sorted(RawUserRequest.model_fields)
            raise _tool_error(f"{field}: not a request field (fix: use one of {fields})") from None
        raise _tool_error(f"{field}: {first['msg']} (fix: correct {field} and call again)") from None


_REQUEST_ARGS = ("model_key", "prompt", "images", "videos", "audios", "options", "task_mode", "extra_options")


def _picked(arguments: dict[str, Any]) -> dict[str, Any]:
    """The request fields among a tool's locals (which also hold closure names such as the settings)."""
    return {k: arguments[k] for k in _REQUEST_ARGS if k in arguments}


def _problems(validation: ValidationResult) -> list[dict[str, Any]]:
    return [
        {"field": d.field, "rule": d.rule, "message": d.message, "fix": d.fix}
        for d in (*validation.impossible_inputs, *validation.missing_inputs)
    ]


def _validation_view(validation: ValidationResult) -> dict[str, Any]:
    normalized = validation.normalized
    return {
        "state": validation.state,
        "submittable": validation.is_submittable,
        "model_key": validation.model_key,
        "task_mode": validation.task_mode,
        "provider_model": validation.provider_model,
        "options": normalized.options,
        "problems": _problems(validation),
        "warnings": [{"field": d.field, "message": d.message, "fix": d.fix} for d in validation.warning_details],
        "defaulted": [{"field": d.field, "value": d.value} for d in validation.defaulted_fields],
    }


def _refuse_unsubmittable(validation: ValidationResult) -> None:
    if not validation.is_submittable:
        lines = [f"{p['field']}: {p['message']} (fix: {p['fix']})" for p in _problems(validation)]
        raise _tool_error(f"request is {validation.state}: " + "; ".join(lines))


def _preflight_view(preflight: PreflightResult) -> dict[str, Any]:
    est = preflight.estimate
    return {
        "allowed": preflight.allowed,
        "decision": getattr(preflight, "decision", "allow" if preflight.allowed else "block"),
        "estimated_credits": est.credits,
        "estimated_usd": est.usd,
        "price_verified": est.is_known,
        "pricing_snapshot": est.snapshot_id,
        "assumptions": est.assumptions,
        "reasons": [{"code": r.code, "blocking": r.blocking, "message": r.message} for r in preflight.reasons],
        "available_credits": preflight.available_credits,
    }


def _kie_error(exc: KieError) -> Exception:
    hint = f" (fix: {exc.hint})" if exc.hint else ""
    return _tool_error(f"{type(exc).__name__}: {exc.message}{hint}")


def build_server(kie: KieSession, artifacts_root: Path) -> MCPServer[Any]:
    """The MCP server object. Every tool shares ``kie``: one connection pool and, above all, one rate
    limiter, so an agent firing calls in parallel stays under Kie.ai's createTask limit as a single client
    would. The tools that need the network open it on first use (``open`` is idempotent), so the offline
    tools work without a key or the live opt-in; close it after the server stops."""
    try:
        from mcp.server.mcpserver import MCPServer
    except ImportError:
        raise _missing_extra() from None

    server: MCPServer[Any] = MCPServer(name="kie-async", instructions=INSTRUCTIONS)
    open_session = _session_opener(kie)
    _add_model_tools(server)
    _add_request_tools(server)
    _add_run_tool(server, kie, open_session, ArtifactSettings(root=artifacts_root))
    _add_stored_run_tools(server, artifacts_root)
    _add_account_tools(server, kie, open_session)
    _add_resources(server)
    return server


def _session_opener(kie: KieSession) -> Callable[[], Awaitable[None]]:
    """Open ``kie`` on first use; two first calls at once must not open two pools (open awaits with a coordinator)."""
    opening = asyncio.Lock()

    async def open_session() -> None:
        async with opening:
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
                {"key": s.key, "label": s.label, "family": s.family, "output_kind": s.output_kind,
                 "task_modes": [m.name for m in s.task_modes], "aliases": s.aliases}
                for s in registry.specs.values()
            ]
        }

    @server.tool()
    def describe_model(model_key: str) -> dict[str, Any]:
        """One model's options (types, allowed values, defaults), media slots, limits and verification notes."""
        registry = load_registry()
        found = registry.candidates(model_key)
        if len(found) != 1:
            raise _tool_error(
                f"model_key: {model_key!r} is {'ambiguous' if found else 'unknown'} "
                f"(fix: use one of {registry.model_keys()})"
            )
        return found[0].model_dump(mode="json", exclude_none=True, exclude={"source_file"})


def _add_request_tools(server: MCPServer[Any]) -> None:
    """``validate`` and ``estimate``: a request checked and priced, offline; nothing is bought."""

    @server.tool()
    def validate(
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
        request = _as_request(_picked(locals()))
        try:
            return _validation_view(validate_request(request))
        except KieError as exc:
            raise _kie_error(exc) from None

    @server.tool()
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
        """Price a request from the pricing snapshot (credits and USD) and gate it on an optional budget."""
        request = _as_request(_picked(locals()))
        budget = budget_credits
        try:
            validation = validate_request(request)
            _refuse_unsubmittable(validation)
            preflight = await run_preflight(validation, budget_credits=budget, allow_unknown_cost=budget is None)
        except KieError as exc:
            raise _kie_error(exc) from None
        return {"validation": _validation_view(validation), "preflight": _preflight_view(preflight)}


def _add_run_tool(
    server: MCPServer[Any], kie: KieSession, open_session: Callable[[], Awaitable[None]], artifacts: ArtifactSettings
) -> None:
    """``run_request``: the one tool that buys, only with a budget cap and ``confirm=true`` (else a dry run)."""

    @server.tool()
    async def run_request(
        model_key: str,
        budget_credits: float,
        prompt: str | None = None,
        images: list[str] | None = None,
        videos: list[str] | None = None,
        audios: list[str] | None = None,
        options: dict[str, Any] | None = None,
        task_mode: str | None = None,
        extra_options: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        confirm: bool = False,
    ) -> dict[str, Any]:
        """Run a request end to end. budget_credits caps what it may cost. Without confirm=true this is a dry
        run: it validates, prices and checks the balance, and buys nothing. Live Kie.ai also needs
        KIE_ALLOW_LIVE=1 in the server's environment."""
        request = _as_request(_picked(locals()))
        try:
            validation = validate_request(request)
            _refuse_unsubmittable(validation)
            await open_session()  # refuses the real Kie.ai without KIE_ALLOW_LIVE: a tool error naming the fix
            if not confirm:
                preflight = await run_preflight(validation, credit_source=kie, budget_credits=budget_credits)
                return _dry_run_view(validation, preflight)
            # confirm=true is the agent's (and its user's) answer to a require_confirmation tier too.
            opts = PipelineOptions(artifacts=artifacts, budget_credits=budget_credits, confirmed=True,
                                   tags=list(tags or []))
            result = await run_pipeline(request, kie, options=opts)
        except KieError as exc:
            raise _kie_error(exc) from None
        except ValueError as exc:
            raise _tool_error(f"{exc} (fix: correct the named value and call again)") from None
        return _run_view(result)


def _dry_run_view(validation: ValidationResult, preflight: PreflightResult) -> dict[str, Any]:
    return {
        "dry_run": True,
        "validation": _validation_view(validation),
        "preflight": _preflight_view(preflight),
        "next": "nothing was bought; call again with confirm=true to buy this"
        if all(r.code == "needs_confirmation" for r in preflight.blocking_reasons)
        else "blocked: fix the reasons above",
    }


def _run_view(result: RunResult) -> dict[str, Any]:
    return {
        "dry_run": False,
        "status": result.status,
        "state": result.state.value,
        "run_id": result.run_id,
        "task_id": result.task_id,
        "outputs": [str(o.path) for o in result.outputs],
        "output_urls": result.output_urls,
        "credits_estimated": result.credits_estimated,
        "credits_charged": result.credits_charged,
        "error": result.error,
        "resumable": result.resumable,
    }


def _add_stored_run_tools(server: MCPServer[Any], artifacts_root: Path) -> None:
    """``get_run`` and ``query_runs``: the runs stored under the artifacts root, offline."""

    @server.tool()
    async def get_run(run_id: str) -> dict[str, Any]:
        """A stored run's manifest: status, prompts, options, outputs (paths and URLs), tags and notes."""
        if not run_id.strip() or any(c in run_id for c in "/\\") or run_id.startswith("."):
            raise _tool_error(f"run_id: {run_id!r} is not a run id (fix: use a run_id from run_request or query_runs)")
        try:
            run = await load_run(artifacts_root, run_id)
        except KieError as exc:
            raise _kie_error(exc) from None
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
            raise _tool_error(f"limit: {limit} is out of range (fix: a whole number from 1 to 500)")
        try:
            entries = await query_runs(artifacts_root, model=model, status=status, since=since, limit=limit, tag=tag)
        except (KieError, ValueError) as exc:
            raise _tool_error(f"{exc} (fix: check the filters)") from None
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
            raise _kie_error(exc) from None
        return {"credits": balance.credits, "usd": round(balance.credits * 0.005, 4)}


def _add_resources(server: MCPServer[Any]) -> None:
    """Every model spec and docs page as a text resource."""
    for spec_path in sorted(data_dir("model_specs").glob("*.yaml")):
        _add_text_resource(server, f"kie://models/{spec_path.stem}", spec_path, "application/yaml",
                           f"model spec {spec_path.stem}")
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

