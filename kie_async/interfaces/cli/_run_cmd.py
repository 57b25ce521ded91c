"""``kie-async run`` (one request through the whole pipeline) and ``kie-async run-batch`` (a JSONL file)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import json
import os
import shlex
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from kie_async.artifacts.settings import ArtifactSettings
from kie_async.catalogue.preflight import PreflightResult
from kie_async.catalogue.request_models import MediaInput, RawUserRequest
from kie_async.core.errors import KieInputError, paid_task_id
from kie_async.core.settings import KieSettings
from kie_async.core.spelling import CLI as CLI_SPELLING
from kie_async.interfaces.cli._common import (
    add_offline_flag,
    check_file_arg,
    check_folder_arg,
    count_arg,
    credits_arg,
    default_output_dir,
    json_kind,
    number_arg,
    seconds_arg,
    strict_json,
)
from kie_async.interfaces.cli._engine_batch import enqueue_batch
from kie_async.interfaces.cli._live import console, err_console, settings_for
from kie_async.interfaces.cli._output import on_terminal
from kie_async.interfaces.cli._request_args import build_request, callback_url_arg, request_args
from kie_async.ledger.journal import batch_identity
from kie_async.pipeline.batch_chat import check_chat_requests
from kie_async.pipeline.chat_request import BatchRequest, ChatRequest, ChatRunResult
from kie_async.pipeline.fanout import BatchProgress, run_many
from kie_async.pipeline.run import PipelineOptions, RunResult, run_pipeline
from kie_async.pipeline.run_models import ConfirmCallback, RunResults
from kie_async.session import KieSession

COORDINATION_ENV = "KIE_COORDINATION_URL"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    _register_run(sub)
    _register_run_batch(sub)


def _register_run(sub: argparse._SubParsersAction[Any]) -> None:
    run = sub.add_parser("run", help="validate, price, upload, submit, wait, download and record one request")
    request_args(run)
    _common_run_args(run)
    run.add_argument("--preset", default=None, help="prompt preset key (default: the model's)")
    run.add_argument(
        "--resume-task",
        default=None,
        metavar="TASK_ID",
        help="continue a task an earlier run bought (it ended 'incomplete'): wait, download, record; buys nothing",
    )
    run.add_argument(
        "--resubmit-uncertain",
        action="store_true",
        help="buy again a request an interrupted run may already have bought (check the dashboard first: this can "
        "pay twice)",
    )
    run.add_argument(
        "--resubmit",
        action="store_true",
        help="buy a new task even when the ledger holds a paid, undelivered (or maybe bought) one for this request "
        "(that task stays resumable with --resume-task; this pays again)",
    )
    run.add_argument(
        "--idempotency-key",
        default=None,
        metavar="KEY",
        help="name this purchase: the same command with the same key returns the earlier result instead of buying "
        "a new variation",
    )
    run.set_defaults(handler=_run)


def _register_run_batch(sub: argparse._SubParsersAction[Any]) -> None:
    batch = sub.add_parser(
        "run-batch", help="run every request in a JSONL file (one RawUserRequest, or a chat call, per line)"
    )
    batch.add_argument(
        "file",
        type=Path,
        help='JSONL: {"model_key": ..., "prompt": ..., "options": {...}}; a line with "messages" is a chat call: '
        '{"model": CHAT_MODEL, "messages": ..., "system": ..., "options": {...}}',
    )
    batch.add_argument("--concurrency", type=count_arg, default=8, help="pipelines in flight at once (default 8)")
    batch.add_argument("--journal", type=Path, default=None, help="journal file (default OUT/journals/FILE.jsonl)")
    batch.add_argument("--retry-failed", action="store_true", help="re-submit requests whose task failed before")
    batch.add_argument(
        "--resubmit-uncertain",
        action="store_true",
        help="re-submit requests an interrupted run may already have submitted (check the dashboard first: "
        "this can pay twice)",
    )
    batch.add_argument(
        "--callback-url",
        type=callback_url_arg,
        default=None,
        help="Kie.ai calls this URL when each task finishes; a receiver there (e.g. `kie-async receive-callbacks "
        "--journal JOURNAL`) settles requests whose createTask answer was lost",
    )
    batch.add_argument(
        "--coordination",
        default=None,
        metavar="URL",
        help="redis://… shared with other run-batch processes (default $KIE_COORDINATION_URL): they split the "
        "batch, take over a dead one's requests, and each prints the outcome of the whole batch",
    )
    batch.add_argument(
        "--batch-id",
        default=None,
        metavar="ID",
        help="the shared batch's name (default: a hash of FILE's content, so the same file is the same batch)",
    )
    batch.add_argument(
        "--engine",
        choices=("celery", "taskiq"),
        default=None,
        help="enqueue the requests as jobs of this task engine instead of running them here (workers: "
        "`kie-async worker`); each request is bought once, however often the batch is enqueued",
    )
    batch.add_argument("--broker", default=None, metavar="URL", help="with --engine: the workers' broker")
    batch.add_argument(
        "--result-backend", default=None, metavar="URL", help="with --engine: where results go (default: the broker)"
    )
    batch.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _common_run_args(batch)
    batch.set_defaults(handler=_run_batch)


def _common_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None, help="artifacts root (default $KIE_OUTPUT_DIR or ./outputs)")
    parser.add_argument("--budget", type=credits_arg, default=None, help="credit cap: never submit past it")
    parser.add_argument("--allow-unknown-cost", action="store_true", help="submit even when no price is known")
    parser.add_argument(
        "--unknown-cost-ceiling",
        type=number_arg(minimum=0.0, strict=True),
        default=None,
        metavar="CREDITS",
        help="with a budget: credits it holds for each request with no known price (settled on the real charge)",
    )
    parser.add_argument("--wait-timeout", type=seconds_arg, default=None, help="seconds to wait per task (> 0)")
    parser.add_argument("--no-derivatives", action="store_true", help="skip web/thumb images")
    parser.add_argument(
        "--yes",
        action="store_true",
        help="confirm runs whose estimate reaches KIE_CONFIRM_CREDIT_THRESHOLD / KIE_CONFIRM_COST_USD_THRESHOLD "
        "(without it a terminal asks; with no terminal such runs are refused)",
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="tag recorded with the run (repeatable); find it later with `artifacts list --tag`",
    )
    parser.add_argument(
        "--context",
        action="append",
        type=_context_arg,
        default=[],
        metavar="KEY=VALUE",
        help="your own context stored verbatim in run.json (e.g. request_id=abc); repeatable",
    )
    parser.add_argument(
        "--enhance-with",
        default=None,
        metavar="MODEL",
        help="enhance the prompt through this Kie chat model with the preset's system prompt "
        "(e.g. claude-haiku-4.5); a batch's --budget counts its credits",
    )
    parser.add_argument(
        "--prompt-policy",
        choices=["off", "auto", "preview"],
        default="auto",
        help="with --enhance-with: auto sends the enhanced prompt, preview records it and sends "
        "yours, off skips the enhancer",
    )
    add_offline_flag(parser)


def _context_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


async def _ask_line(prompt: str) -> str | None:
    """``input()`` on a daemon thread: the loop keeps running other runs meanwhile, and a Ctrl-C ends the
    command at once (a worker-pool thread blocked in ``input()`` would hold the interpreter's exit)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str | None] = loop.create_future()

    def settle(value: str | None) -> None:
        if not answer.done():
            answer.set_result(value)

    def read() -> None:
        try:
            # The question goes to stderr: input(prompt) writes to stdout, which may be --json output.
            sys.stderr.write(prompt)
            sys.stderr.flush()
            line: str | None = input()
        except (EOFError, OSError):
            line = None
        with contextlib.suppress(RuntimeError):  # the loop already closed (Ctrl-C): nobody waits any more
            loop.call_soon_threadsafe(settle, line)

    threading.Thread(target=read, name="kie-async-confirm", daemon=True).start()
    return await answer


def confirm_on_terminal(yes: bool) -> ConfirmCallback:
    """The CLI's answer to a require_confirmation tier: ``--yes``, else ask on a terminal, else refuse.

    Questions are asked one at a time (a batch may hold several runs at the threshold at once), and the
    blocking ``input()`` runs in a worker thread so the other runs' polls and downloads go on meanwhile.
    """
    lock = asyncio.Lock()

    async def confirm(preflight: PreflightResult) -> bool:
        if yes:
            return True
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return False  # the run ends blocked with the threshold's reason; --yes is named in the summary
        est = preflight.estimate
        usd = f" (${est.usd:.2f})" if est.usd is not None else ""
        what = f"{est.credits:g} credits{usd}" if est.credits is not None else "an unknown cost"
        async with lock:
            err_console.print(
                f"[yellow]{preflight.validation.model_key}: estimated {what} reaches the confirmation threshold.[/]"
            )
            answer = await _ask_line("Buy it? [y/N] ")
        return answer is not None and answer.strip().lower() in ("y", "yes")

    return confirm


def _options(args: argparse.Namespace, out: Path) -> PipelineOptions:
    artifacts = ArtifactSettings(root=out)
    if args.no_derivatives:
        artifacts = artifacts.model_copy(
            update={"derivatives": artifacts.derivatives.model_copy(update={"enabled": False})}
        )
    return PipelineOptions(
        artifacts=artifacts,
        preset_key=getattr(args, "preset", None),
        allow_unknown_cost=args.allow_unknown_cost,
        unknown_cost_ceiling=args.unknown_cost_ceiling,
        spelling=CLI_SPELLING,
        budget_credits=args.budget if hasattr(args, "prompt") else None,
        wait_timeout=args.wait_timeout,
        callback_url=getattr(args, "callback_url", None) if not hasattr(args, "prompt") else None,
        tags=args.tag,
        source_context=dict(args.context),
        confirm=confirm_on_terminal(args.yes),
        enhance=f"kie:{args.enhance_with}" if args.enhance_with else None,
        prompt_policy=args.prompt_policy,
    )


def _summary(result: RunResult) -> dict[str, Any]:
    return {
        "status": result.status,
        "model_key": result.model_key,
        "task_id": result.task_id,
        "run_id": result.run_id,
        "run_dir": result.run_dir,
        "outputs": [str(o.path) for o in result.outputs],
        "credits_estimated": result.credits_estimated,
        "credits_charged": result.credits_charged,
        "credits_unknown": result.credits_unknown,
        "prompt_chat": result.prompt_chat.model_dump(mode="json") if result.prompt_chat else None,
        "resumed": result.resumed,
        "state": result.state.value,
        "resumable": result.resumable,
        "spent_nothing": result.spent_nothing,
        "request_key": result.request_key,
        "error": result.error,
        "error_type": result.error_type,
        "warnings": result.warnings,
        **_chat_summary(result),
    }


def _chat_summary(result: RunResult) -> dict[str, Any]:
    """A chat call's answer in the summary (its text, usage, credits; not the raw body)."""
    if not isinstance(result, ChatRunResult):
        return {}
    return {"chat": result.chat.model_dump(mode="json", exclude={"raw"}) if result.chat is not None else None}


def _run(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    # Everything that can be refused is refused here, before the session (or the emulator) starts.
    out = check_folder_arg(args.out or default_output_dir(), "--out")
    if args.resume_task is not None and not args.resume_task.strip():
        raise KieInputError("--resume-task is empty", hint="pass the task id the earlier run printed")
    return _run_async(args, build_request(args), out)


async def _run_async(args: argparse.Namespace, request: RawUserRequest, out: Path) -> int:
    with _sigterm_as_interrupt() as terminated:
        try:
            # Offline too: the emulated account is kept under the output root, so its tasks outlive the command.
            async with settings_for(args, out) as settings, KieSession(settings) as kie:
                result = await run_pipeline(
                    request,
                    kie,
                    options=_options(args, out),
                    resume_task_id=args.resume_task,
                    idempotency_key=args.idempotency_key,
                    resubmit=args.resubmit,
                    resubmit_uncertain=args.resubmit_uncertain,
                )
        except asyncio.CancelledError as exc:
            task_id = paid_task_id(exc)
            if task_id is not None:
                err_console.print(
                    f"[yellow]interrupted after the purchase: task {task_id} is paid for.[/] The same command "
                    f"resumes it without buying again, as does: {_resume_command(task_id)}"
                )
            if not terminated:
                raise  # Ctrl-C: the command ends as interrupted (130)
            return _terminated()
    if args.json:
        print(json.dumps(_summary(result), indent=2))
    else:
        for stage in result.stages:
            mark = {"ok": "[green]✓[/]", "blocked": "[yellow]■[/]"}.get(stage.status, "[red]✗[/]")
            console.print(f"{mark} {stage.name:<10} {stage.seconds:7.3f}s {stage.detail or ''}")
        console.print(f"status: [bold]{result.status}[/bold]" + (f" — {result.error}" if result.error else ""))
        if _balance_refused(result):
            console.print(
                "[yellow]nothing was bought.[/] Fix KIE_API_KEY, or try the same command with "
                "[bold]--offline[/] (the embedded emulator: nothing spent)."
            )
        if _held_for_confirmation(result):
            console.print("[yellow]nothing was bought.[/] Confirm on a terminal, or add [bold]--yes[/] in scripts.")
        for output in result.outputs:
            console.print(f"output: {output.path}")
        if result.run_dir:
            console.print(f"run folder: {result.run_dir}")
        if result.resumable and result.task_id:
            console.print(
                f"[yellow]task {result.task_id} is paid for.[/] Finish it without buying again: the same command "
                f"with [bold]--resume-task {result.task_id}[/]"
            )
    return 0 if result.succeeded else 1


def result_line(index: int, result: RunResult) -> str:
    """One finished request on one line, nothing cut: ``#3 succeeded nano-banana-2 credits=8 task=... output=PATH``."""
    credits = f"{result.credits_charged:g}" if result.credits_charged is not None else "-"
    words = [
        f"#{index}",
        result.status + (" (resumed)" if result.resumed else ""),
        result.model_key,
        f"credits={credits}",
        f"task={result.task_id or '-'}",
    ]
    words += [f"output={o.path}" for o in result.outputs]
    if not result.outputs and result.error:
        words.append("error=" + " ".join(part.strip() for part in result.error.splitlines() if part.strip()))
    return " ".join(words)


def batch_summary(results: list[RunResult]) -> dict[str, Any]:
    """Counts by status and the credits charged: the batch's last line (and the ``summary`` of ``--json``)."""
    statuses = Counter(r.status for r in results)
    return {
        "requests": len(results),
        "statuses": dict(sorted(statuses.items())),
        "succeeded": statuses["succeeded"],
        "credits_charged": sum(r.credits_charged or 0.0 for r in results),
    }


def _balance_refused(result: RunResult) -> bool:
    return result.preflight is not None and any(
        r.code == "balance_unavailable" and "key was refused" in r.message for r in result.preflight.reasons
    )


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[list[bool]]:
    """SIGTERM (docker stop, Kubernetes, systemd) stops the command the way Ctrl-C does: the running task is
    cancelled, answers already on their way are awaited and recorded, and what was bought is printed.

    Yields a list that holds ``True`` once SIGTERM arrived. Where signals cannot be handled on the loop (Windows,
    a loop outside the main thread) nothing changes.
    """
    fired: list[bool] = []
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_sigterm() -> None:
        fired.append(True)
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        yield fired
        return
    try:
        yield fired
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _terminated() -> int:
    """After SIGTERM's cancel has been handled: the command ends with 143 (128 + SIGTERM)."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    print("terminated", file=sys.stderr)
    return 143


def _resume_command(task_id: str) -> str:
    """The command line that was run, with ``--resume-task ID`` (any earlier one dropped)."""
    argv = sys.argv[1:]
    if not argv or argv[0] != "run":
        return f"kie-async run … --resume-task {task_id}"
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume-task":
            skip = True
        elif not arg.startswith("--resume-task="):
            kept.append(arg)
    return shlex.join(["kie-async", *kept, "--resume-task", task_id])


def _held_for_confirmation(result: RunResult) -> bool:
    return result.preflight is not None and any(r.code == "needs_confirmation" for r in result.preflight.reasons)


def _coordinated(settings: KieSettings, shared: _SharedBatch | None) -> KieSettings:
    if shared is None:
        return settings
    return settings.model_copy(update={"coordination_url": shared.url})


_LINE_HINT = (
    'each line is a JSON object such as {"model_key": "nano-banana-2", "prompt": "..."}, or a chat call such as '
    '{"model": "gpt-5.5", "messages": "...", "system": "..."}'
)
_MEDIA_LISTS = ("images", "videos", "audios")


def _read_batch_text(path: Path) -> str:
    """The file as text, or a ``KieInputError`` that says what is wrong with it (never an ``OSError``)."""
    if path.is_dir():
        raise KieInputError(f"{path} is a folder, not a JSONL batch file", hint="pass the .jsonl file itself")
    if path.exists() and not path.is_file():
        # /dev/zero reads until memory runs out and a FIFO blocks forever: refused at once, like the journal path.
        raise KieInputError(
            f"{path} is not a regular file (a device or a pipe), not a JSONL batch file",
            hint="save the requests to a .jsonl file and pass that file",
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KieInputError(f"{path}: no such file", hint="check the batch file's name and folder") from None
    except OSError as exc:
        raise KieInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")  # a BOM (some Windows editors) is not an error
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise KieInputError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            hint="save the batch file as UTF-8",
        ) from None


def _loc_path(loc: tuple[int | str, ...]) -> str:
    """``('images', 0, 'MediaInput', 'rol')`` -> ``images[0].rol`` (pydantic's union-member tags dropped)."""
    known = set(RawUserRequest.model_fields) | set(MediaInput.model_fields)
    text = ""
    for position, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in known or position == len(loc) - 1:
            text += f".{part}" if text else part
    return text


def _describe(exc: ValidationError) -> str:
    """The one problem worth reporting: an unknown key first (with a close match), else the first error."""
    errors = exc.errors()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = error["loc"]
            key = str(loc[-1])
            model: type[BaseModel] = MediaInput if loc and loc[0] in _MEDIA_LISTS else RawUserRequest
            close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
            suggestion = f" (did you mean {close[0]!r}?)" if close else ""
            return f"unknown key {_loc_path(loc)!r}{suggestion}"
    first = errors[0]
    return f"{_loc_path(first['loc']) or 'line'}: {first['msg']}"


def load_batch_file(path: Path) -> list[BatchRequest]:
    """Parse a JSONL batch file; a bad line is reported as ``FILE:LINE: what is wrong``, nothing is half-read.

    Unknown keys are errors, not ignored: ``"optons": {"resolution": "4K"}`` used to run at the default 1K. A line
    with a ``"messages"`` field is a chat call (:class:`ChatRequest`), every other line a media request.
    """
    return [request for _, request in _batch_lines(path)]


def _media_only(lines: list[tuple[str, BatchRequest]]) -> list[RawUserRequest]:
    """An engine runs media requests as jobs; a chat line is refused before anything is enqueued."""
    for where, request in lines:
        if not isinstance(request, RawUserRequest):
            raise KieInputError(
                f"{where}: a chat call cannot run as an engine job (yet)", hint="run chat lines without --engine"
            )
    return [request for _, request in lines if isinstance(request, RawUserRequest)]


def _batch_lines(path: Path) -> list[tuple[str, BatchRequest]]:
    """:func:`load_batch_file`, each request with its ``FILE:LINE``."""
    requests: list[tuple[str, BatchRequest]] = []
    # Split on newlines only: str.splitlines() also splits on U+2028 & co, which JSON strings may contain.
    for number, line in enumerate(_read_batch_text(path).split("\n"), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            data = strict_json(line)
        except ValueError as exc:
            raise KieInputError(f"{where}: {exc}", hint=_LINE_HINT) from None
        if not isinstance(data, dict):
            raise KieInputError(f"{where}: expected a JSON object, got {json_kind(data)}", hint=_LINE_HINT)
        if "messages" in data:
            requests.append((where, _chat_line(data, where)))
            continue
        try:
            requests.append((where, RawUserRequest.model_validate(data)))
        except ValidationError as exc:
            chat_like = "model" in data and "model_key" not in data
            more = ' (a chat call is a line with "messages")' if chat_like else ""
            raise KieInputError(f"{where}: {_describe(exc)}{more}", hint=_LINE_HINT) from None
    if not requests:
        raise KieInputError(f"{path} has no requests", hint="one JSON object per line")
    return requests


def _chat_line(data: dict[str, Any], where: str) -> ChatRequest:
    """A chat call's line: ``model`` (or ``model_key``), ``messages``, then ``system``, ``options``..."""
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "line"
        if first["type"] == "extra_forbidden":
            close = difflib.get_close_matches(name, ["model", "messages", "system", "options", "provider_model"], n=1)
            problem = f"unknown key {name!r} in a chat line" + (f" (did you mean {close[0]!r}?)" if close else "")
        else:
            problem = f'{name}: {first["msg"]} (a line with "messages" is a chat call)'
        raise KieInputError(f"{where}: {problem}", hint=_LINE_HINT) from None


def default_batch_id(path: Path) -> str:
    """The shared batch id of a batch file: a hash of its requests (not its bytes), the same on every machine."""
    requests = load_batch_file(path)
    if any(isinstance(r, ChatRequest) for r in requests):
        raise KieInputError(
            f"{path} has chat calls, which cannot run in a batch shared over processes yet",
            hint="run it without --coordination, or put the chat calls in a file of their own",
        )
    return batch_identity([r for r in requests if isinstance(r, RawUserRequest)])


class _SharedBatch(BaseModel):
    """``run-batch --coordination``: which shared batch this process joins, and where."""

    url: SecretStr
    batch_id: str


def _shared_batch(args: argparse.Namespace) -> _SharedBatch | None:
    url = args.coordination or os.environ.get(COORDINATION_ENV)
    if not url:
        if args.batch_id is not None:
            raise KieInputError("--batch-id names a batch shared over processes", hint="add --coordination redis://…")
        return None
    if args.offline:
        raise KieInputError(
            "--offline starts a private emulator in each process; a shared batch needs one service for all of them",
            hint=f"start one (`kie-async emulator`), point KIE_BASE_URL at it, and drop --offline (or unset "
            f"{COORDINATION_ENV})",
        )
    if args.journal is not None:
        raise KieInputError(
            "--journal is the journal of a batch run by one process; a shared batch's journal lives in the "
            "coordination store",
            hint="drop --journal (or --coordination)",
        )
    batch_id = args.batch_id if args.batch_id is not None else default_batch_id(args.file)
    if not batch_id.strip() or len(batch_id) > 200 or not batch_id.isprintable():
        raise KieInputError(f"--batch-id {batch_id!r} is not usable", hint="give a short printable name")
    return _SharedBatch(url=SecretStr(url), batch_id=batch_id)


def _run_batch(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    # Everything that can be refused is refused here, before the session (or the emulator) starts.
    lines = _batch_lines(args.file)
    if args.engine is not None:
        return enqueue_batch(args, _media_only(lines))
    out = check_folder_arg(args.out or default_output_dir(), "--out")
    shared = _shared_batch(args)
    if shared is not None:
        return _chats_checked(args, lines, out, None, shared)
    journal = check_file_arg(args.journal or out / "journals" / f"{args.file.stem}.jsonl", "--journal")
    if journal.resolve() == args.file.resolve():
        raise KieInputError(f"--journal {journal} is the batch file itself", hint="give --journal another file name")
    return _chats_checked(args, lines, out, journal, None)


async def _chats_checked(
    args: argparse.Namespace,
    lines: list[tuple[str, BatchRequest]],
    out: Path,
    journal: Path | None,
    shared: _SharedBatch | None,
) -> int:
    """The batch, once its chat lines name chat models and fit them (a refusal names the file's line)."""
    requests = [request for _, request in lines]
    await check_chat_requests(requests, [where for where, _ in lines])
    return await _run_batch_async(args, requests, out, journal, shared)


async def _run_many_session(
    args: argparse.Namespace,
    requests: list[BatchRequest],
    out: Path,
    journal: Path | None,
    shared: _SharedBatch | None,
    show: Callable[[BatchProgress], None] | None,
    log_line: Callable[[int, RunResult], None],
) -> list[RunResult]:
    async with settings_for(args, out) as settings, KieSession(_coordinated(settings, shared)) as kie:
        return await run_many(
            requests,
            kie,
            concurrency=args.concurrency,
            budget_credits=args.budget,
            on_progress=show,
            on_result=log_line,
            options=_options(args, out),
            journal_path=journal,
            retry_failed=args.retry_failed,
            resubmit_uncertain=args.resubmit_uncertain,
            batch_id=shared.batch_id if shared is not None else None,
        )


async def _run_batch_async(
    args: argparse.Namespace,
    requests: list[BatchRequest],
    out: Path,
    journal: Path | None,
    shared: _SharedBatch | None,
) -> int:
    # On a terminal: a live bar, then a table at the terminal's width. In a pipe or a log (or with --json): no
    # redraws; a plain line per request as it ends (status, credits, every output path or the whole error).
    live = not args.json and on_terminal()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not live,
        transient=False,
    )
    bar: TaskID = progress.add_task("batch", total=len(requests), detail="")
    ended = 0

    def show(p: BatchProgress) -> None:
        detail = (
            f"submitted {p.submitted} · generating {p.generating} · done {p.done} · failed {p.failed}"
            f" · skipped {p.skipped} · credits {p.credits_spent:g}"
        )
        progress.update(bar, completed=p.finished, detail=detail)

    def log_line(index: int, result: RunResult) -> None:
        nonlocal ended
        ended += 1
        if not live and not args.json:
            print(f"[{ended}/{len(requests)}] {result_line(index, result)}", flush=True)

    where = f"shared batch {shared.batch_id}" if shared is not None else f"journal: {journal}"
    with _sigterm_as_interrupt() as terminated:
        try:
            with progress:
                results = await _run_many_session(
                    args, requests, out, journal, shared, show if live else None, log_line
                )
        except asyncio.CancelledError:
            err_console.print(
                f"[yellow]interrupted: every purchase so far is recorded ({where}).[/] The same "
                "command resumes them without buying again."
            )
            if not terminated:
                raise  # Ctrl-C: the command ends as interrupted (130)
            return _terminated()
    return _report_batch(args, results, journal, shared, live=live)


def _report_batch(
    args: argparse.Namespace, results: list[RunResult], journal: Path | None, shared: _SharedBatch | None, *, live: bool
) -> int:
    """The batch's report: one JSON document, or (on a terminal) a table, then the summary and what to do next."""
    where = f"shared batch {shared.batch_id}" if shared is not None else f"journal: {journal}"
    if args.json:
        document = {
            "journal": str(journal) if journal is not None else None,
            "batch_id": shared.batch_id if shared is not None else None,
            "results": [_summary(r) for r in results],
            "summary": batch_summary(results),
        }
        print(json.dumps(document, indent=2))
        return 0 if all(r.succeeded for r in results) else 1
    if live:
        table = Table(title=f"{len(results)} requests")
        for column in ("#", "model", "status", "credits", "task", "output / error"):
            table.add_column(column, overflow="fold")
        for i, r in enumerate(results):
            credits = f"{r.credits_charged:g}" if r.credits_charged is not None else "-"
            credits = "unknown" if r.credits_unknown else credits
            tail = "\n".join(str(o.path) for o in r.outputs) if r.outputs else (r.error or "")
            table.add_row(
                str(i), r.model_key, r.status + (" (resumed)" if r.resumed else ""), credits, r.task_id or "-", tail
            )
        console.print(table)
    summary = batch_summary(results)
    counts = ", ".join(f"{n} {status}" for status, n in summary["statuses"].items())
    console.print(f"{len(results)} requests: {counts}; {RunResults(results).spend_line()}; {where}")
    states = Counter(r.status for r in results)
    if states["incomplete"]:
        console.print(
            f"[yellow]{states['incomplete']} paid task(s) did not finish here.[/] Run the same command again to "
            "resume them (nothing is bought twice; --retry-failed never re-buys them)."
        )
    if states["submit_uncertain"]:
        console.print(
            f"[yellow]{states['submit_uncertain']} request(s) may have been bought already[/] (createTask's "
            "answer was lost); see each error for when and what to look for in the Kie.ai dashboard."
        )
    return 0 if all(r.succeeded for r in results) else 1
