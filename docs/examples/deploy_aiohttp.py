"""An aiohttp backend with several worker processes on one Kie.ai account, sharing limits and callbacks via Redis.

Deploy it: one process per core on the same port (the kernel spreads connections over them, SO_REUSEPORT), each
with its own session, all meeting in Redis:

    export KIE_API_KEY=... KIE_ALLOW_LIVE=1 KIE_COORDINATION_URL=redis://127.0.0.1:6379/0
    export KIE_WEBHOOK_HMAC_KEY=...   PUBLIC_URL=https://api.example.com   # where Kie.ai reaches /kie/callback
    for i in 1 2 3 4; do python docs/examples/deploy_aiohttp.py serve --port 8080 & done

Try it offline (an emulator, a throwaway redis-server unless KIE_COORDINATION_URL is set, 2 workers and a few
requests):

    python docs/examples/deploy_aiohttp.py --offline
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import AsyncIterator

from aiohttp import web

from kie_async import KieSession, KieSettings, PipelineOptions, RawUserRequest, run_pipeline
from kie_async.interfaces.callback_receiver import add_callback_route

CALLBACK_PATH = "/kie/callback"
KIE = web.AppKey("kie", KieSession)


def create_app() -> web.Application:
    app = web.Application()
    # One session per worker process. KIE_COORDINATION_URL makes it join the others on the account in Redis.
    kie = KieSession(KieSettings.from_env())
    app[KIE] = kie

    async def session_lifetime(app: web.Application) -> AsyncIterator[None]:
        async with kie:
            yield

    app.cleanup_ctx.append(session_lifetime)
    # Verifies (KIE_WEBHOOK_HMAC_KEY), refuses replays, wakes the task's waiters in every worker through Redis,
    # and settles a request of this worker whose createTask answer was lost.
    add_callback_route(app, kie, CALLBACK_PATH, hmac_key=os.environ.get("KIE_WEBHOOK_HMAC_KEY") or None)
    app.router.add_get("/health", health)
    app.router.add_post("/images", images)
    return app


async def health(request: web.Request) -> web.Response:
    kie = request.app[KIE]
    return web.json_response({"worker": os.getpid(), "coordinator": kie.coordinator.kind})


async def images(request: web.Request) -> web.Response:
    kie = request.app[KIE]
    prompt = str((await request.json()).get("prompt") or "")
    options = PipelineOptions(
        callback_url=os.environ["PUBLIC_URL"].rstrip("/") + CALLBACK_PATH,
        callback_driven=True,  # no fast polling: the callback (on whichever worker it lands) wakes this wait
        budget_credits=20,
    )
    started = time.monotonic()
    result = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt=prompt), kie, options=options)
    return web.json_response(
        {
            "status": result.status,
            "task_id": result.task_id,
            "worker": os.getpid(),
            "wait_seconds": result.stage("wait").seconds if result.succeeded else time.monotonic() - started,
            "error": str(result.error) if result.error else None,
        }
    )


def _workers(port: int) -> list[list[str]]:
    return [[sys.executable, os.path.abspath(__file__), "serve", "--port", str(port)] for _ in range(2)]


if __name__ == "__main__":
    from _deploy import run_offline
    from _shared import make_parser, run

    parser = make_parser(__doc__ or "")
    parser.add_argument("command", nargs="?", choices=["serve"], help="serve: run one worker process")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args: argparse.Namespace = parser.parse_args()
    if args.command == "serve":
        web.run_app(create_app(), host=args.host, port=args.port, reuse_port=True, print=None)
    elif args.offline:
        run(lambda _: run_offline("aiohttp (2 processes, SO_REUSEPORT)", _workers, workers=2, requests=6), args)
    else:
        parser.error("say `serve` (one worker process) or --offline (the demo)")
