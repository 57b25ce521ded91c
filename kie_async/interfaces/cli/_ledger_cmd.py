"""``kie-async ledger list``: the account's purchases on this machine. ``kie-async ledger recover``: re-seed a
shared ledger that Redis lost, from run folders and the provider.

When Redis comes back empty (a restart without persistence, a FLUSHALL), every shared batch stops with
``JournalLostError`` and nothing is bought until an operator re-seeds the ledger. This command reads the run
folders under each ``--out`` root, asks the provider for each task's own record (``recordInfo``: the correlation
token in its callback URL names the request it was bought for), writes those requests into the account's
request index, and sets a new ledger epoch. The next run of a batch then resumes those tasks instead of buying
them again. It lists what it cannot recover: run folders without a task id, tasks without a token (bought
without a callback URL), tasks the provider cannot read, and any createTask whose answer was lost before a run
folder was written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr

from kie_async.artifacts.index import read_index
from kie_async.artifacts.manifest import RunStatus
from kie_async.coordination.shared_journal import RecoveredRequest
from kie_async.core.errors import KieError, KieInputError
from kie_async.interfaces.cli._common import check_folder_arg, default_output_dir
from kie_async.interfaces.cli._live import resolve_settings, settings_for
from kie_async.ledger.account import AccountLedger
from kie_async.ledger.journal import BatchJournal, parse_token
from kie_async.ledger.request_state import RequestState, facts
from kie_async.session import KieSession
from kie_async.wire.callbacks import request_token_from_url

COORDINATION_ENV = "KIE_COORDINATION_URL"


class RecoveryReport(BaseModel):
    epoch: str | None = None
    recovered: list[RecoveredRequest] = Field(default_factory=list)
    delivered: int = Field(default=0, description="run folders whose outputs are on disk")
    cannot: list[str] = Field(default_factory=list, description="what could not be recovered, and why")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    group = sub.add_parser("ledger", help="inspect and repair the shared purchase ledger")
    actions = group.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    recover = actions.add_parser(
        "recover",
        help="re-seed a shared ledger Redis lost, from run folders and the provider's records",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    recover.add_argument(
        "--coordination", metavar="URL", default=None, help=f"the Redis URL (default ${COORDINATION_ENV})"
    )
    recover.add_argument(
        "--out",
        type=Path,
        action="append",
        required=True,
        help="an artifacts root whose run folders to read (repeatable)",
    )
    recover.add_argument("--dry-run", action="store_true", help="report what would be recovered; write nothing")
    recover.add_argument("--json", action="store_true", help="machine-readable output")
    recover.add_argument("--offline", action="store_true", help="read tasks from an embedded emulator")
    recover.set_defaults(handler=_recover)
    listing = actions.add_parser(
        "list",
        help="what this account's ledger holds: each request's variations, state and task id",
        description="The purchase ledger of the account (KIE_API_KEY, or --offline's emulated one) on this machine: "
        "one line per request variation. A paid, undelivered task is what an identical request resumes.",
    )
    listing.add_argument("--undelivered", action="store_true", help="only tasks paid for and not delivered")
    listing.add_argument("--out", type=Path, default=None, help="the output root of --offline (its emulated account)")
    listing.add_argument("--offline", action="store_true", help="the embedded emulator's account under --out")
    listing.add_argument("--json", action="store_true", help="machine-readable output (one JSON list)")
    listing.set_defaults(handler=_list)


def _recover(args: argparse.Namespace) -> Any:
    url = args.coordination or os.environ.get(COORDINATION_ENV)
    if not url:
        raise KieInputError("ledger recover needs the coordination store", hint="add --coordination redis://…")
    return _run(args, url)


async def _run(args: argparse.Namespace, url: str) -> int:
    # The Redis client is a third-party cost: loaded only when this command runs, not for `kie-async --help`.
    from kie_async.coordination.ledger_seed import reseed_ledger
    from kie_async.coordination.redis_coordinator import RedisCoordinator

    report = RecoveryReport()
    async with (
        resolve_settings(args.offline) as settings,
        KieSession(settings.model_copy(update={"coordination_url": SecretStr(url)})) as kie,
    ):
        for root in args.out:
            await _read_root(kie, root, report)
        coordinator = kie.coordinator
        if not isinstance(coordinator, RedisCoordinator):
            raise KieInputError(f"{url} is not a shared coordination store", hint="give a redis:// URL")
        if not args.dry_run:
            report.epoch = await reseed_ledger(coordinator, report.recovered)
    _print(report, args)
    return 0


async def _read_root(kie: KieSession, root: Path, report: RecoveryReport) -> None:
    if not await asyncio.to_thread(root.is_dir):
        report.cannot.append(f"{root}: not a folder")
        return
    for entry in (await read_index(root)).latest_per_run():
        delivered = entry.status is RunStatus.SUCCEEDED
        report.delivered += delivered
        if not entry.task_id:
            report.cannot.append(f"run {entry.run_id}: no task id in its run folder")
            continue
        try:
            record = await kie.get_task(entry.task_id)
        except KieError as exc:
            report.cannot.append(f"task {entry.task_id} (run {entry.run_id}): the provider cannot read it ({exc})")
            continue
        stored = record.request_param.get("callBackUrl")
        token = request_token_from_url(stored if isinstance(stored, str) else None)
        if token is None:
            report.cannot.append(f"task {entry.task_id} (run {entry.run_id}): no correlation token (no callback URL)")
            continue
        key, _, scope = parse_token(token)
        # A delivered one resumes (downloads again, buys nothing) only in its own batch: elsewhere an identical
        # request is a new variation. An undelivered one resumes wherever the same request runs next.
        state = RequestState.SUCCEEDED if delivered else RequestState.SUBMITTED
        report.recovered.append(RecoveredRequest(key=key, task_id=entry.task_id, scope=scope, state=state))


def _print(report: RecoveryReport, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
        return
    done = "would re-seed" if args.dry_run else f"re-seeded (epoch {report.epoch})"
    print(f"ledger {done}: {len(report.recovered)} paid task(s) put back ({report.delivered} run folder(s) delivered)")
    for item in report.recovered:
        print(f"  {item.key}: task {item.task_id} ({item.state.value})")
    if report.cannot:
        print(
            f"cannot recover ({len(report.cannot)}); createTask answers lost before a run folder was written "
            "cannot be listed:"
        )
        for line in report.cannot:
            print(f"  {line}")


class LedgerLine(BaseModel):
    """One variation of one request, as ``ledger list`` shows it."""

    key: str
    state: RequestState
    task_id: str | None = None
    model_key: str | None = None
    prompt: str | None = None
    at: str | None = None
    undelivered: bool = Field(description="paid for and not delivered: an identical request resumes it")


def _list(args: argparse.Namespace) -> Any:
    out = check_folder_arg(args.out or default_output_dir(), "--out")
    return _list_async(args, out)


async def _list_async(args: argparse.Namespace, out: Path) -> int:
    async with settings_for(args, out, check_live=False) as settings:
        ledger = AccountLedger.for_settings(settings)
    lines = await asyncio.to_thread(_read_ledger, ledger)
    if args.undelivered:
        lines = [line for line in lines if line.undelivered]
    if args.json:
        print(json.dumps([line.model_dump(mode="json") for line in lines], indent=2))
        return 0
    if not lines:
        print(f"the ledger at {ledger.root} holds no {'undelivered ' if args.undelivered else ''}purchases")
    for line in lines:
        what = f"{line.model_key or '?'} {line.prompt or ''}".strip()
        mark = "  <- resumable" if line.undelivered else ""
        print(f"{line.state.value:<11} {line.task_id or '-':<34} {line.key}  {what[:60]}{mark}")
    return 0


def _read_ledger(ledger: AccountLedger) -> list[LedgerLine]:
    lines: list[LedgerLine] = []
    for path in ledger.books():
        view = BatchJournal(path)
        view._load()  # read only, no ownership: a listing never waits for a run that holds a request
        for key, entry in view.entries.items():
            intent = entry.intent or entry.last
            lines.append(
                LedgerLine(
                    key=key,
                    state=entry.state,
                    task_id=entry.task_id,
                    model_key=intent.model_key if intent else None,
                    prompt=intent.prompt if intent else None,
                    at=entry.last.at.isoformat(timespec="seconds") if entry.last else None,
                    undelivered=entry.task_id is not None and facts(entry.state).resumable,
                )
            )
    return lines
