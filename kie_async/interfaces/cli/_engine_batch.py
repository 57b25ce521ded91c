"""``kie-async run-batch FILE --engine celery|taskiq --broker URL``: the batch as jobs of a task engine.

Each line becomes one job with a stable idempotency key (``job-<request key>``, ``#2`` for a repeat in the file:
:func:`kie_async.integrations.jobs.batch_jobs`), so stopping and running the command again, or running it twice,
buys nothing twice: a finished job returns its recorded result, a paid one is resumed. The workers
(``kie-async worker``) decide how the runs go (their ``KIE_*`` settings); this command only enqueues and waits.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from kie_async.catalogue.request_models import RawUserRequest
from kie_async.core.errors import KieInputError
from kie_async.integrations.jobs import ENGINE_MODULES, JobSummary, batch_jobs

LOCAL_ONLY = {
    # dest: the option, which the workers' settings decide (or only a local batch has)
    "journal": "--journal",
    "retry_failed": "--retry-failed",
    "resubmit_uncertain": "--resubmit-uncertain",
    "callback_url": "--callback-url",
    "coordination": "--coordination",
    "batch_id": "--batch-id",
    "out": "--out",
    "budget": "--budget",
    "allow_unknown_cost": "--allow-unknown-cost",
    "unknown_cost_ceiling": "--unknown-cost-ceiling",
    "wait_timeout": "--wait-timeout",
    "no_derivatives": "--no-derivatives",
    "tag": "--tag",
    "context": "--context",
    "enhance_with": "--enhance-with",
    "offline": "--offline",
    "offline_state": "--offline-state",
}


def check_engine_args(args: argparse.Namespace) -> None:
    """Refuse what a batch on an engine cannot carry, before anything is enqueued."""
    if args.broker is None:
        raise KieInputError("--engine needs --broker", hint="add --broker redis://host:6379/0 (the workers' broker)")
    given = [flag for dest, flag in LOCAL_ONLY.items() if getattr(args, dest, None) not in (None, False, [])]
    if given:
        raise KieInputError(
            f"{', '.join(given)} cannot go with --engine: the workers' settings decide how each request runs",
            hint="set them where the workers run (KIE_* variables), or drop --engine to run the batch here",
        )


async def run_on_engine(args: argparse.Namespace, requests: list[RawUserRequest]) -> int:
    """Enqueue every request, print each result as it arrives, and a summary; exit 1 unless all succeeded."""
    engine = importlib.import_module(ENGINE_MODULES[args.engine])  # the extra's module, imported by name
    jobs = await batch_jobs(requests)

    def heard(index: int, summary: JobSummary) -> None:
        if not args.json:
            print(result_line(index, summary), flush=True)

    results: list[JobSummary] = await engine.enqueue_batch(
        jobs, broker=args.broker, backend=args.result_backend, on_result=heard
    )
    statuses = Counter(str(r["status"]) for r in results)
    summary = {
        "requests": len(results),
        "statuses": dict(sorted(statuses.items())),
        "succeeded": statuses["succeeded"],
        "resumed": sum(1 for r in results if r.get("resumed")),
        "credits_charged": sum(float(r.get("credits") or 0.0) for r in results),
    }
    if args.json:
        json.dump({"results": results, "summary": summary}, sys.stdout, indent=2)
        print()
    else:
        print(
            f"{summary['succeeded']}/{len(results)} succeeded ({summary['resumed']} already delivered), "
            f"credits {summary['credits_charged']:g}"
        )
    return 0 if statuses["succeeded"] == len(results) else 1


def result_line(index: int, summary: JobSummary) -> str:
    """``#3 succeeded (resumed) nano-banana-2 credits=8 task=... output=PATH``."""
    credits = summary.get("credits")
    words: list[Any] = [
        f"#{index}",
        str(summary["status"]) + (" (resumed)" if summary.get("resumed") else ""),
        summary.get("model_key"),
        f"credits={credits:g}" if isinstance(credits, int | float) else "credits=-",
        f"task={summary.get('task_id') or '-'}",
    ]
    words += [f"output={path}" for path in summary.get("outputs") or []]
    if not summary.get("outputs") and summary.get("error"):
        words.append("error=" + " ".join(str(summary["error"]).split()))
    return " ".join(str(word) for word in words)


def enqueue_batch(args: argparse.Namespace, requests: list[RawUserRequest]) -> Coroutine[Any, Any, int]:
    """``run-batch --engine``: checked now, run by the command line's loop."""
    check_engine_args(args)
    return run_on_engine(args, requests)
