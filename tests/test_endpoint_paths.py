"""Endpoint paths moved by KIE_*_PATH variables (a gateway in front of Kie.ai), end to end through a proxy."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kie_async.artifacts import ArtifactSettings
from kie_async.catalogue.request_models import RawUserRequest
from kie_async.client import request_path as session_module
from kie_async.core.settings import PATH_ENV, EndpointPaths, KieSettings, PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.pipeline.run import PipelineOptions, run_pipeline
from kie_async.session import KieSession
from tests.conftest import serve_app

GATEWAY = {
    "/gw/create": "/api/v1/jobs/createTask",
    "/gw/status": "/api/v1/jobs/recordInfo",
    "/gw/credit": "/api/v1/chat/credit",
    "/gw/upload": "/api/file-stream-upload",
}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.1)


def gateway(api: str, uploads: str, seen: list[str]) -> web.Application:
    """Forwards only the gateway's own paths; Kie.ai's paths are 404 here, so a request that ignores the
    setting fails instead of passing."""

    async def forward(request: web.Request) -> web.Response:
        seen.append(request.path)
        target = GATEWAY.get(request.path)
        if target is None:
            return web.Response(status=404, text="not a gateway path")
        base = uploads if "upload" in request.path else api
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with (
            aiohttp.ClientSession() as client,
            client.request(
                request.method, base + target, params=request.query, data=await request.read(), headers=headers
            ) as upstream,
        ):
            return web.Response(status=upstream.status, body=await upstream.read(), content_type=upstream.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def test_a_run_goes_through_the_gateway_paths(
    emulator: KieEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    async with serve_app(gateway(emulator.base_url, emulator.upload_base_url, seen)) as url:
        monkeypatch.setenv("KIE_API_KEY", emulator.api_key)
        monkeypatch.setenv("KIE_BASE_URL", url)
        monkeypatch.setenv("KIE_UPLOAD_BASE_URL", url)
        monkeypatch.setenv("KIE_CREATE_TASK_PATH", "/gw/create")
        monkeypatch.setenv("KIE_STATUS_PATH", "/gw/status")
        monkeypatch.setenv("KIE_CREDITS_PATH", "/gw/credit")
        monkeypatch.setenv("KIE_UPLOAD_STREAM_PATH", "/gw/upload/")
        settings = KieSettings.from_env(poll=PollSettings(schedule=((float("inf"), 0.05),)))
        assert settings.paths.upload_stream == "/gw/upload"
        image = tmp_path / "in.png"
        _png(image)
        async with KieSession(settings) as kie:
            assert (await kie.get_credits()).credits == emulator.credits()
            request = RawUserRequest(model_key="nano-banana-2", prompt="edit this", images=[str(image)])
            result = await run_pipeline(
                request, kie, options=PipelineOptions(artifacts=ArtifactSettings(root=tmp_path / "out"))
            )
    assert result.status == "succeeded", result.error
    assert set(seen) == set(GATEWAY)


def _png(path: Path) -> None:
    import pyvips

    pyvips.Image.black(64, 64).cast("uchar").write_to_file(str(path))


def test_defaults_are_kie_paths_and_bad_paths_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = EndpointPaths()
    assert paths.create_task == session_module.CREATE_TASK_PATH
    assert paths.record_info == session_module.RECORD_INFO_PATH
    assert paths.credits == session_module.CREDIT_PATH
    assert paths.download_url == session_module.DOWNLOAD_URL_PATH
    assert paths.upload_url == session_module.UPLOAD_URL_PATH
    assert paths.upload_base64 == session_module.UPLOAD_BASE64_PATH
    assert set(PATH_ENV) == set(EndpointPaths.model_fields)
    for bad in ("https://evil.example/api", "//evil.example/x", "api/v1/x", "/a?b=1", "/a b", ""):
        with pytest.raises(ValueError):
            EndpointPaths(create_task=bad)
    monkeypatch.setenv("KIE_CREATE_TASK_PATH", "http://evil.example/steal")
    with pytest.raises(ValueError, match="endpoint path"):
        KieSettings.from_env()


def test_the_toolkits_other_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIE_BASE_URL", raising=False)
    monkeypatch.setenv("KIE_MARKET_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("KIE_UPLOAD_DEFAULT_PATH", "/team/uploads/")
    monkeypatch.setenv("KIE_READ_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("KIE_CONNECT_TIMEOUT_SECONDS", "4")
    monkeypatch.setenv("KIE_UPLOAD_READ_TIMEOUT_SECONDS", "90")
    monkeypatch.setenv("KIE_WAIT_TIMEOUT_SECONDS", "120")
    monkeypatch.setenv("KIE_WAIT_POLL_INTERVAL_SECONDS", "3")
    settings = KieSettings.from_env()
    assert settings.base_url == "http://127.0.0.1:9" and settings.upload_path == "team/uploads"
    assert (settings.request_timeout, settings.connect_timeout, settings.upload_timeout) == (30, 4, 90)
    assert settings.poll.timeout == 120 and settings.poll.schedule == ((float("inf"), 3.0),)
    monkeypatch.setenv("KIE_BASE_URL", "http://127.0.0.1:8")  # ours wins over the toolkit's name
    assert KieSettings.from_env().base_url == "http://127.0.0.1:8"
    for name, bad in (
        ("KIE_WAIT_POLL_INTERVAL_SECONDS", "nan"),
        ("KIE_READ_TIMEOUT_SECONDS", "-1"),
        ("KIE_WAIT_TIMEOUT_SECONDS", "soon"),
    ):
        with monkeypatch.context() as m:
            m.setenv(name, bad)
            with pytest.raises(ValueError):
                KieSettings.from_env()
