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

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from kie_async import (
    CallbackReceiver,
    KieConfigError,
    KieError,
    KieSession,
    KieSettings,
    PipelineOptions,
    RawUserRequest,
    run_pipeline,
)
from kie_async.artifacts import load_run

CALLBACK_PATH = "/kie/callback"


def public_url() -> str:
    """``PUBLIC_URL``, the address at which Kie.ai (and the app's clients) reach this app, checked at start-up:
    without it every request would fail, so the app refuses to start and says what to set."""
    url = os.environ.get("PUBLIC_URL", "").strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        shown = f"is {url!r}" if url else "is not set"
        raise KieConfigError(
            f"PUBLIC_URL {shown}: this app needs the http(s) address at which Kie.ai reaches it",
            hint="export PUBLIC_URL=https://api.example.com (callbacks go to PUBLIC_URL/kie/callback)",
        )
    return url


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.public_url = public_url()  # before anything else: no worker starts without what it needs
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
    base: str = request.app.state.public_url
    options = PipelineOptions(
        callback_url=base + CALLBACK_PATH,
        callback_driven=True,  # no fast polling: the callback (on whichever worker it lands) wakes this wait
        budget_credits=20,
    )
    started = time.monotonic()
    result = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt=body.prompt), kie, options=options)
    return {
        "status": result.status,
        "task_id": result.task_id,
        "run_id": result.run_id,
        # Where the image is: the file on this server, and the URL at which this app serves it.
        "outputs": [
            {"path": str(output.path), "url": f"{base}/runs/{result.run_id}/outputs/{n}"}
            for n, output in enumerate(result.outputs)
        ],
        "worker": os.getpid(),
        "wait_seconds": result.stage("wait").seconds if result.succeeded else time.monotonic() - started,
        "error": str(result.error) if result.error else None,
    }


@app.get("/runs/{run_id}/outputs/{n}")
async def output_file(run_id: str, n: int) -> FileResponse:
    try:
        run = await load_run(None, run_id)  # the run id must name one run folder under the output root
    except (KieError, ValueError, OSError):
        raise HTTPException(status_code=404, detail="no such run") from None
    outputs = run.manifest.outputs
    if not 0 <= n < len(outputs) or outputs[n].path is None:
        raise HTTPException(status_code=404, detail="no such output")
    return FileResponse(run.run_dir / outputs[n].path)


@app.post(CALLBACK_PATH)
async def kie_callback(request: Request) -> JSONResponse:
    callbacks: CallbackReceiver = request.app.state.callbacks
    # The raw body as a stream (a huge one is refused without being buffered), the headers and the URL.
    reply = await callbacks.receive(request.headers, request.stream(), request_url=str(request.url))
    return JSONResponse(reply.body, status_code=reply.status)


def _uvicorn(port: int) -> list[list[str]]:
    here = os.path.dirname(os.path.abspath(__file__))
    return [
        [
            sys.executable,
            "-m",
            "uvicorn",
            "deploy_fastapi:app",
            "--app-dir",
            here,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ]
    ]


if __name__ == "__main__":
    from _deploy import run_offline
    from _shared import make_parser

    args = make_parser(__doc__ or "").parse_args()
    if not args.offline:
        print(
            "this file is an app: run it with `uvicorn deploy_fastapi:app --app-dir docs/examples --workers 4`,"
            " or try it with --offline",
            file=sys.stderr,
        )
        sys.exit(2)
    from _shared import run

    run(lambda _: run_offline("FastAPI (uvicorn --workers 2)", _uvicorn, workers=2, requests=6), args)
