"""Refusals name the caller's spelling and the fix that spends nothing first; typos get a "did you mean"."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kie_async import KieInputError, KieSession, RawUserRequest, run_many, run_pipeline, validate_request
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(generation_seconds=0.05)


@pytest.fixture
def real_kie(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings that point at the real Kie.ai (nothing is sent: the command refuses first)."""
    for name in ("KIE_BASE_URL", "KIE_UPLOAD_BASE_URL", "KIE_API_KEY", "KIE_ALLOW_LIVE"):
        monkeypatch.delenv(name, raising=False)


def test_credits_without_a_key_names_the_key_and_offline(real_kie: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["credits"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no Kie.ai API key: KIE_API_KEY is not set")
    assert "--offline" in err and err.index("--offline") < err.index("KIE_ALLOW_LIVE")  # the free fix first
    assert "KieSettings" not in err and len(err.splitlines()) == 1


def test_credits_with_a_key_but_no_opt_in_names_the_variable_and_offline(
    real_kie: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIE_API_KEY", "a-real-looking-key")
    assert main(["credits"]) == 2
    err = capsys.readouterr().err
    assert "without KIE_ALLOW_LIVE=1" in err and "--offline" in err and "KieSettings" not in err
    assert "a-real-looking-key" not in err


@pytest.fixture
def wrong_key(emulator: KieEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> KieEmulator:
    monkeypatch.setenv("KIE_BASE_URL", emulator.base_url)
    monkeypatch.setenv("KIE_UPLOAD_BASE_URL", emulator.upload_base_url)
    monkeypatch.setenv("KIE_API_KEY", "not-the-key")
    monkeypatch.chdir(tmp_path)
    return emulator


async def test_run_with_a_refused_key_says_so_and_how_to_fix_it(
    wrong_key: KieEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--model", "nano-banana-2", "--prompt", "a fox", "--out", "out"]
    assert await asyncio.to_thread(main, argv) == 1
    out = capsys.readouterr().out
    assert "the API key was refused" in out and "KIE_API_KEY" in out and "--offline" in out
    assert wrong_key.tasks() == []  # nothing was bought
    assert await asyncio.to_thread(main, ["credits"]) == 2
    assert "the API key in KIE_API_KEY was refused" in capsys.readouterr().err


def test_validate_suggests_model_keys_options_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--model", "nano-banan", "--prompt", "x"]) == 1
    out = capsys.readouterr().out
    assert "did you mean 'nano-banana-2' or 'nano-banana-pro'?" in out
    assert "seedream" not in out  # not every key in the catalogue
    argv = [
        "validate",
        "--model",
        "nano-banana-2",
        "--prompt",
        "x",
        "--option",
        "resolutin=2K",
        "--option",
        "output_format=jpeg",
    ]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "no option 'resolutin' — fix: did you mean 'resolution'?" in out
    assert "output_format='jpeg' is not allowed — fix: did you mean 'jpg'?" in out


def test_models_show_typo_suggests_instead_of_listing_everything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "nano-banan"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "error: unknown model 'nano-banan': did you mean nano-banana-2 or nano-banana-pro?"
    assert captured.out == ""


def test_validate_request_refuses_a_dict_with_one_typed_line() -> None:
    with pytest.raises(KieInputError, match=r"validate_request: request is a dict.*RawUserRequest\(\*\*request\)"):
        validate_request({"model_key": "nano-banana-2", "prompt": "x"})  # type: ignore[arg-type]


def test_library_validation_suggests_the_model_key() -> None:
    result = validate_request(RawUserRequest(model_key="nano-banan", prompt="x"), check_files=False)
    [problem] = [p for p in result.impossible_inputs if p.field == "model_key"]
    assert problem.fix.startswith("did you mean 'nano-banana-2' or 'nano-banana-pro'?")


async def test_run_many_and_run_pipeline_refuse_wrong_argument_types(emulator: KieEmulator) -> None:
    request = RawUserRequest(model_key="nano-banana-2", prompt="a fox")
    async with KieSession(emulator.settings()) as kie:
        with pytest.raises(KieInputError, match=r"run_many: requests is one RawUserRequest.*run_many\(\[request\]"):
            await run_many(request, kie)  # type: ignore[arg-type]
        with pytest.raises(KieInputError, match=r"requests\[0\] is a dict.*RawUserRequest\(\*\*requests\[0\]\)"):
            await run_many([{"model_key": "nano-banana-2", "prompt": "a fox"}], kie)  # type: ignore[list-item]
        with pytest.raises(KieInputError, match=r"run_pipeline: request is a dict"):
            await run_pipeline({"model_key": "nano-banana-2"}, kie)  # type: ignore[arg-type]
        with pytest.raises(KieInputError, match=r"requests is a KieSession"):
            await run_many(kie, [request])  # type: ignore[arg-type]
    assert emulator.tasks() == []


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_run_batch_refuses_a_device_or_a_fifo_at_once(kind: str, tmp_path: Path) -> None:
    if kind == "fifo":
        path = tmp_path / "requests.jsonl"
        os.mkfifo(path)  # nobody writes: reading it would block forever
    else:
        path = Path("/dev/zero")  # reading it would fill memory
    done = subprocess.run(
        [sys.executable, "-m", "kie_async", "run-batch", str(path), "--offline", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {path} is not a regular file (a device or a pipe), not a JSONL batch file"
        " — save the requests to a .jsonl file and pass that file"
    )
    assert not (tmp_path / "out").exists()  # refused before any folder, emulator or session


def test_a_mistyped_option_gets_a_did_you_mean_from_its_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["estimate", "--model", "nano-banana-2", "--promt", "a fox"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "kie-async estimate: error: unrecognized arguments: --promt a fox; --promt: did you mean --prompt" in err
