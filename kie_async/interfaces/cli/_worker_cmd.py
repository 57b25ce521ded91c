"""``kie-async worker --engine celery|taskiq --broker URL``: a worker of that engine, running kie-async's job.

It becomes the engine's own worker command (``celery -A kie_async.integrations.celery worker`` or ``taskiq worker
kie_async.integrations.taskiq:broker``), in this process, so signals, logs and exit codes are the engine's. Every
job runs one request through the pipeline and is bought once, however often the engine delivers it
(:mod:`kie_async.integrations.jobs`). Arguments after ``--`` go to the engine's command as they are.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any

from kie_async.core.errors import KieConfigError
from kie_async.interfaces.cli import plugins_env_for_user_code
from kie_async.interfaces.cli._common import number_arg

ENGINES: dict[str, tuple[str, ...]] = {
    # engine: the Python modules it needs (the extra installs them)
    "celery": ("celery",),
    "taskiq": ("taskiq", "taskiq_redis"),
}
CELERY_APP = "kie_async.integrations.celery"
TASKIQ_BROKER = "kie_async.integrations.taskiq:broker"
_concurrency_arg = number_arg(minimum=1, maximum=1024, integer=True)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    parser = sub.add_parser(
        "worker",
        help="run a Celery or Taskiq worker for kie-async jobs (each request bought once, however often delivered)",
        description="Start the engine's own worker with kie-async's run_request job. Settings come from KIE_* "
        "(KIE_API_KEY, KIE_COORDINATION_URL for limits shared by the workers). Arguments after -- go to the "
        "engine's command.",
    )
    parser.add_argument("--engine", choices=sorted(ENGINES), required=True, help="the task engine")
    parser.add_argument("--broker", required=True, metavar="URL", help="the engine's broker, e.g. redis://host:6379/0")
    parser.add_argument(
        "--result-backend", default=None, metavar="URL", help="where job results go (default: the broker)"
    )
    parser.add_argument(
        "--concurrency",
        type=_concurrency_arg,
        default=None,
        help="jobs at once: Celery's --concurrency (processes or threads), Taskiq's --max-async-tasks "
        "(default: the engine's)",
    )
    parser.add_argument(
        "--pool",
        choices=("prefork", "threads", "solo"),
        default=None,
        help="Celery's pool (default: Celery's, prefork)",
    )
    parser.add_argument("engine_args", nargs=argparse.REMAINDER, help="-- then arguments for the engine's command")
    parser.set_defaults(handler=run_worker)


def engine_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The engine's worker command (``python -m <engine> worker ...``) and the variables it runs with."""
    extra = list(args.engine_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    prefix = "KIE_CELERY" if args.engine == "celery" else "KIE_TASKIQ"
    env = {f"{prefix}_BROKER_URL": args.broker, f"{prefix}_RESULT_BACKEND": args.result_backend or args.broker}
    if args.engine == "celery":
        argv = ["celery", "-A", CELERY_APP, "worker"]
        if args.concurrency is not None:
            argv += ["--concurrency", str(args.concurrency)]
        if args.pool is not None:
            argv += ["--pool", args.pool]
    else:
        if args.pool is not None:
            raise KieConfigError("--pool is Celery's", hint="drop --pool: a Taskiq worker runs its jobs on asyncio")
        argv = ["taskiq", "worker", TASKIQ_BROKER, "--ack-type", "when_saved"]
        if args.concurrency is not None:
            argv += ["--max-async-tasks", str(args.concurrency)]
    return [sys.executable, "-m", *argv, *extra], env


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):  # a module blocked or half-imported: not usable
        return False


def run_worker(args: argparse.Namespace) -> int:
    missing = [name for name in ENGINES[args.engine] if not _installed(name)]
    if missing:
        raise KieConfigError(
            f"the {args.engine} worker needs {', '.join(missing)}, which is not installed",
            hint=f"pip install 'kie-async[{args.engine}]'",
        )
    argv, env = engine_command(args)
    sys.stdout.flush()
    sys.stderr.flush()
    # The engine's worker, in this process: the user's tasks may use pydantic plugins the command line turned off.
    os.execve(sys.executable, argv, {**plugins_env_for_user_code(dict(os.environ)), **env})
    return 0  # pragma: no cover  (execve does not return)
