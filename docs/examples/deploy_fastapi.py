"""A FastAPI backend with several worker processes on one Kie.ai account, sharing limits and callbacks via Redis.

Deploy it (4 workers; every one opens its own session, all of them meet in Redis):

    export KIE_API_KEY=... KIE_ALLOW_LIVE=1 KIE_COORDINATION_URL=redis://127.0.0.1:6379/0
    export KIE_WEBHOOK_HMAC_KEY=...   PUBLIC_URL=https://api.example.com   # where Kie.ai reaches /kie/callback
    uvicorn deploy_fastapi:app --app-dir docs/examples --workers 4

Try it offline (an emulator, a throwaway redis-server unless KIE_COORDINATION_URL is set, uvicorn with 2 workers
and a few requests):

    python docs/examples/deploy_fastapi.py --offline
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from kie_async import CallbackReceiver, KieSession, KieSettings, PipelineOptions, RawUserRequest, run_pipeline

CALLBACK_PATH = "/kie/callback"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One session per worker process, for the worker's whole life. KIE_COORDINATION_URL makes it join the others
    # on the account in Redis (createTask window, 429 pauses, callbacks, batch budgets, uploads).
    async with KieSession(KieSettings.from_env()) as kie:
        app.state.kie = kie
        # Verifies (KIE_WEBHOOK_HMAC_KEY), refuses replays, wakes the task's waiters in every worker through Redis,
        # and settles a request of this worker whose createTask answer was lost.
        app.state.callbacks = CallbackReceiver(kie, hmac_key=os.environ.get("KIE_WEBHOOK_HMAC_KEY") or None)
        yield


app = FastAPI(lifespan=lifespan)


class ImageRequest(BaseModel):
    prompt: str


@app.get("/health")
async def health(request: Request) -> dict[str, Any]:
    kie: KieSession = request.app.state.kie
    return {"worker": os.getpid(), "coordinator": kie.coordinator.kind}


@app.post("/images")
async def images(body: ImageRequest, request: Request) -> dict[str, Any]:
    kie: KieSession = request.app.state.kie
    options = PipelineOptions(
        callback_url=os.environ["PUBLIC_URL"].rstrip("/") + CALLBACK_PATH,
        callback_driven=True,  # no fast polling: the callback (on whichever worker it lands) wakes this wait
        budget_credits=20,
    )
    started = time.monotonic()
    result = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt=body.prompt), kie, options=options)
    return {
        "status": result.status,
        "task_id": result.task_id,
        "worker": os.getpid(),
        "wait_seconds": result.stage("wait").seconds if result.succeeded else time.monotonic() - started,
        "error": str(result.error) if result.error else None,
    }


@app.post(CALLBACK_PATH)
async def kie_callback(request: Request) -> JSONResponse:
    callbacks: CallbackReceiver = request.app.state.callbacks
    # The raw body as a stream (a huge one is refused without being buffered), the headers and the URL.
    reply = await callbacks.receive(request.headers, request.stream(), request_url=str(request.url))
    return JSONResponse(reply.body, status_code=reply.status)


def _uvicorn(port: int) -> list[list[str]]:
    here = os.path.dirname(os.path.abspath(__file__))
    return [[sys.executable, "-m", "uvicorn", "deploy_fastapi:app", "--app-dir", here, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2", "--log-level", "warning"]]


if __name__ == "__main__":
    from _deploy import run_offline
    from _shared import make_parser

    args = make_parser(__doc__ or "").parse_args()
    if not args.offline:
        print("this file is an app: run it with `uvicorn deploy_fastapi:app --app-dir docs/examples --workers 4`,"
              " or try it with --offline", file=sys.stderr)
        sys.exit(2)
    from _shared import run

    run(lambda _: run_offline("FastAPI (uvicorn --workers 2)", _uvicorn, workers=2, requests=6), args)
