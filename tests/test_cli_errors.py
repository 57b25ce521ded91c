"""Bad command lines end in one ``error:`` line and exit 2, before anything is sent or bought.

Usage errors (a number out of range, bad JSON in an option) come from argparse and name the option; errors
found while reading files come from the handler. The "bought today" cases run the real CLI against an
emulator started by the test (the CLI in a worker thread, with ``KIE_*`` pointing at it), so the emulator's
own counters prove that no task was created; a positive control shows the same harness does see a purchase.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kie_async.emulator import KieEmulator
from kie_async.errors import KieInputError
from kie_async.interfaces.cli import main
from kie_async.interfaces.cli._run_cmd import load_batch_file

RUN = ["run", "--model", "nano-banana-2", "--prompt", "a red fox"]
GOOD_LINE = '{"model_key": "nano-banana-2", "prompt": "a red fox"}'


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """argparse's usage error: exit 2, exactly one ``error:`` line, no traceback."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def handler_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    """An error found by a command: exactly one line on stderr, ``error: ...``."""
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


# -- numbers ----------------------------------------------------------------------------------------------------

BAD_NONNEG = ["nan", "NaN", "inf", "-inf", "1e400", "-1", "abc"]
BAD_POSITIVE = [*BAD_NONNEG, "0"]
BAD_COUNT = ["0", "-3", "1.5", "nan", "abc"]


@pytest.mark.parametrize("value", BAD_NONNEG)
@pytest.mark.parametrize("command", [RUN, ["run-batch", "batch.jsonl"]], ids=["run", "run-batch"])
def test_budget_must_be_finite_and_non_negative(
    capsys: pytest.CaptureFixture[str], in_tmp: Path, command: list[str], value: str
) -> None:
    (in_tmp / "batch.jsonl").write_text(GOOD_LINE + "\n")
    line = usage_error(capsys, [*command, "--offline", "--out", "o", f"--budget={value}"])
    assert "--budget" in line
    assert not (in_tmp / "o").exists()


@pytest.mark.parametrize("value", BAD_POSITIVE)
def test_wait_timeout_must_be_finite_and_positive(capsys: pytest.CaptureFixture[str], in_tmp: Path, value: str) -> None:
    line = usage_error(capsys, [*RUN, "--offline", "--out", "o", f"--wait-timeout={value}"])
    assert "--wait-timeout" in line
    assert not (in_tmp / "o").exists()


def test_wait_timeout_minus_one_written_apart(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    line = usage_error(capsys, [*RUN, "--offline", "--out", "o", "--wait-timeout", "-1"])
    assert "--wait-timeout" in line and "(got '-1')" in line  # quotes what was typed


@pytest.mark.parametrize("value", BAD_COUNT)
def test_concurrency_must_be_a_whole_number_of_at_least_one(
    capsys: pytest.CaptureFixture[str], in_tmp: Path, value: str
) -> None:
    (in_tmp / "batch.jsonl").write_text(GOOD_LINE + "\n")
    line = usage_error(capsys, ["run-batch", "batch.jsonl", "--offline", "--out", "o", f"--concurrency={value}"])
    assert "--concurrency" in line


@pytest.mark.parametrize("option", ["--budget", "--credits"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_estimate_numbers(capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    line = usage_error(capsys, ["estimate", "--model", "nano-banana-2", "--prompt", "x", f"{option}={value}"])
    assert option in line


def test_estimate_nan_budget_and_credits_is_not_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    usage_error(
        capsys, ["estimate", "--model", "nano-banana-2", "--prompt", "x", "--budget", "nan", "--credits", "nan"]
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--port", "99999"),
        ("--port", "-1"),
        ("--upload-port", "70000"),
        ("--generation-seconds", "nan"),
        ("--generation-seconds", "-1"),
        ("--credits", "nan"),
        ("--credits", "inf"),
        ("--credits", "-5"),
        ("--rate-limit", "0"),
        ("--rate-window", "0"),
        ("--rate-window", "inf"),
        ("--image-size", "1"),
        ("--image-size", "100000"),
    ],
)
def test_emulator_numbers(capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    assert option in usage_error(capsys, ["emulator", f"{option}={value}"])


@pytest.mark.parametrize("value", ["0", "-1", "x"])
@pytest.mark.parametrize("action", ["list", "latest"])
def test_artifacts_limit(capsys: pytest.CaptureFixture[str], in_tmp: Path, action: str, value: str) -> None:
    assert "--limit" in usage_error(capsys, ["artifacts", action, "--root", str(in_tmp), f"--limit={value}"])


# -- request arguments ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[{", "not valid JSON"),
        ("", "not valid JSON"),
        ('{"prompt": "a"}', "list"),
        ("[1, 2]", "object"),
        ('[{"prompt": "a", "duration": NaN}]', "NaN"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("command", ["validate", "estimate", "run"])
def test_multi_prompt_json(
    capsys: pytest.CaptureFixture[str], in_tmp: Path, command: str, value: str, expected: str
) -> None:
    line = usage_error(capsys, [command, "--model", "kling-3.0-t2v", f"--multi-prompt={value}"])
    assert "--multi-prompt" in line and expected in line


@pytest.mark.parametrize("value", ["resolution", "=4K", " =4K"])
def test_option_syntax(capsys: pytest.CaptureFixture[str], value: str) -> None:
    assert "--option" in usage_error(
        capsys, ["validate", "--model", "nano-banana-2", "--prompt", "x", f"--option={value}"]
    )


@pytest.mark.parametrize(
    "value", ["http://[::1", "ftp://h.test/cb", "not a url", "http://h.test:99999/cb", "https:///path"]
)
def test_callback_url(capsys: pytest.CaptureFixture[str], in_tmp: Path, value: str) -> None:
    line = usage_error(capsys, [*RUN, "--offline", "--out", "o", f"--callback-url={value}"])
    assert "--callback-url" in line
    assert not (in_tmp / "o").exists()


def test_pricing_refresh_bad_date(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "--date" in usage_error(
        capsys, ["pricing", "refresh", "--from", str(tmp_path / "x.json"), "--date", "2026-13-45"]
    )


# -- files and folders ------------------------------------------------------------------------------------------


def test_batch_file_missing(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    line = handler_error(capsys, ["run-batch", "missing.jsonl", "--offline", "--out", "o"])
    assert "missing.jsonl" in line and "no such file" in line
    assert not (in_tmp / "o").exists()


def test_batch_file_is_a_folder(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    (in_tmp / "folder").mkdir()
    line = handler_error(capsys, ["run-batch", "folder", "--offline", "--out", "o"])
    assert "folder" in line and "is a folder" in line


def test_batch_file_not_utf8(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    (in_tmp / "latin.jsonl").write_bytes(b'{"model_key": "nano-banana-2", "prompt": "caf\xe9"}\n')
    line = handler_error(capsys, ["run-batch", "latin.jsonl", "--offline", "--out", "o"])
    assert "latin.jsonl" in line and "UTF-8" in line


def test_batch_file_empty(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    (in_tmp / "empty.jsonl").write_text("\n# only a comment\n")
    assert "no requests" in handler_error(capsys, ["run-batch", "empty.jsonl", "--offline", "--out", "o"])


BAD_LINES = [
    (
        '{"model_key": "nano-banana-2", "optons": {"resolution": "4K"}}',
        "unknown key 'optons' (did you mean 'options'?)",
    ),
    ('{"model_key": "nano-banana-2", "promt": "a fox"}', "unknown key 'promt' (did you mean 'prompt'?)"),
    ('{"model_key": "nano-banana-2", "prompt": "x", "zzz": 1}', "unknown key 'zzz'"),
    (
        '{"model_key": "nano-banana-2", "prompt": "x", "images": [{"source": "a.png", "rol": "first_frame"}]}',
        "unknown key 'images[0].rol' (did you mean 'role'?)",
    ),
    ('["nano-banana-2", "a fox"]', "expected a JSON object, got a list"),
    ('"just a string"', "expected a JSON object, got a string"),
    ("42", "expected a JSON object, got a number"),
    ("null", "expected a JSON object, got null"),
    ('{"model_key": "nano-banana-2", "prompt": "x"', "not valid JSON"),
    ("model_key=nano-banana-2", "not valid JSON"),
    ('{"model_key": "nano-banana-2", "prompt": "x", "options": {"duration": NaN}}', "NaN"),
    ('{"prompt": "x"}', "model_key"),
    ('{"model_key": 5, "prompt": "x"}', "model_key"),
]


@pytest.mark.parametrize(("line", "expected"), BAD_LINES, ids=[b[1][:40] for b in BAD_LINES])
def test_batch_line_errors_name_file_line_and_problem(
    capsys: pytest.CaptureFixture[str], in_tmp: Path, line: str, expected: str
) -> None:
    (in_tmp / "b.jsonl").write_text(f"# a comment\n{GOOD_LINE}\n\n{line}\n{GOOD_LINE}\n", encoding="utf-8")
    message = handler_error(capsys, ["run-batch", "b.jsonl", "--offline", "--out", "o"])
    assert "b.jsonl:4: " in message and expected in message, message
    assert not (in_tmp / "o").exists()


def test_load_batch_file_is_usable_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_LINE.encode() + b"\r\n" + GOOD_LINE.encode() + b"\n")  # BOM, CRLF
    assert [r.prompt for r in load_batch_file(path)] == ["a red fox", "a red fox"]
    path.write_text(GOOD_LINE + '\n{"model_key": "x", "optons": {}}\n')
    with pytest.raises(KieInputError, match=r"b\.jsonl:2: unknown key 'optons'"):
        load_batch_file(path)


@pytest.mark.parametrize("command", ["run", "run-batch", "demo"])
def test_out_pointing_at_a_file(capsys: pytest.CaptureFixture[str], in_tmp: Path, command: str) -> None:
    (in_tmp / "taken").write_text("not a folder")
    (in_tmp / "batch.jsonl").write_text(GOOD_LINE + "\n")
    argv = {"run": [*RUN, "--offline"], "run-batch": ["run-batch", "batch.jsonl", "--offline"], "demo": ["demo"]}
    line = handler_error(capsys, [*argv[command], "--out", "taken"])
    assert "--out" in line and "taken" in line and "not a folder" in line
    assert (in_tmp / "taken").read_text() == "not a folder"


def test_out_below_a_file(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    (in_tmp / "taken").write_text("x")
    line = handler_error(capsys, [*RUN, "--offline", "--out", "taken/sub"])
    assert "--out" in line and "not a folder" in line


def test_journal_pointing_at_a_folder(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    (in_tmp / "batch.jsonl").write_text(GOOD_LINE + "\n")
    (in_tmp / "j").mkdir()
    line = handler_error(capsys, ["run-batch", "batch.jsonl", "--offline", "--out", "o", "--journal", "j"])
    assert "--journal" in line and "is a folder" in line


def test_journal_is_the_batch_file(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    (in_tmp / "batch.jsonl").write_text(GOOD_LINE + "\n")
    line = handler_error(capsys, ["run-batch", "batch.jsonl", "--offline", "--out", "o", "--journal", "./batch.jsonl"])
    assert "--journal" in line and "batch file itself" in line
    assert (in_tmp / "batch.jsonl").read_text() == GOOD_LINE + "\n"


def test_artifacts_unknown_status(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    assert "--status" in usage_error(capsys, ["artifacts", "list", "--root", str(in_tmp), "--status", "done"])


def test_pricing_refresh_out_is_a_file(capsys: pytest.CaptureFixture[str], in_tmp: Path) -> None:
    fixture = Path(__file__).parent / "data" / "pricing_api_fixture.json"
    (in_tmp / "taken").write_text("x")
    line = handler_error(capsys, ["pricing", "refresh", "--from", str(fixture), "--out", "taken"])
    assert "--out" in line and "not a folder" in line


@pytest.mark.parametrize("action", ["list", "latest", "rebuild"])
def test_artifacts_root_is_a_file(capsys: pytest.CaptureFixture[str], in_tmp: Path, action: str) -> None:
    (in_tmp / "taken").write_text("x")
    line = handler_error(capsys, ["artifacts", action, "--root", "taken"])
    assert "--root" in line and "not a folder" in line


def test_bad_environment_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIE_BASE_URL", "ftp://example.test")
    line = handler_error(capsys, ["credits"])
    assert "base_url" in line and "http://" in line


# -- what main() does with exceptions a command did not expect --------------------------------------------------


def test_os_error_from_a_command_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(_: object) -> int:
        raise PermissionError(13, "Permission denied", "/somewhere/outputs")

    from kie_async.interfaces.cli import _models_cmd  # main() builds the parser per call, so it picks up the patch

    monkeypatch.setattr(_models_cmd, "models_command", denied)
    line = handler_error(capsys, ["models"])
    assert "Permission denied" in line and "/somewhere/outputs" in line


def test_programming_error_is_reported_not_hidden(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: object) -> int:
        raise ZeroDivisionError("division by zero")

    from kie_async.interfaces.cli import _models_cmd

    monkeypatch.setattr(_models_cmd, "models_command", broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: internal error: ZeroDivisionError: division by zero")
    assert "KIE_ASYNC_TRACEBACK=1" in err
    monkeypatch.setenv("KIE_ASYNC_TRACEBACK", "1")
    assert main(["models"]) == 1
    assert "Traceback" in capsys.readouterr().err


# -- nothing bought: the CLI against an emulator the test owns ---------------------------------------------------


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


@pytest.fixture
def cli_env(emulator: KieEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> KieEmulator:
    monkeypatch.setenv("KIE_BASE_URL", emulator.base_url)
    monkeypatch.setenv("KIE_UPLOAD_BASE_URL", emulator.upload_base_url)
    monkeypatch.setenv("KIE_API_KEY", emulator.api_key)
    monkeypatch.delenv("KIE_ALLOW_LIVE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "batch.jsonl").write_text(GOOD_LINE + "\n")
    (tmp_path / "typo.jsonl").write_text(
        '{"model_key": "nano-banana-2", "prompt": "x", "optons": {"resolution": "4K"}}\n'
    )
    (tmp_path / "taken").write_text("x")
    return emulator


BOUGHT_TODAY = [
    [*RUN, "--budget", "nan"],
    [*RUN, "--budget", "-1"],
    [*RUN, "--wait-timeout", "-1"],
    [*RUN, "--wait-timeout", "nan"],
    [*RUN, "--out", "taken"],
    ["run-batch", "batch.jsonl", "--budget", "nan"],
    ["run-batch", "batch.jsonl", "--concurrency", "0"],
    ["run-batch", "typo.jsonl"],
]


@pytest.mark.parametrize("argv", BOUGHT_TODAY, ids=" ".join)
async def test_rejected_commands_buy_nothing(
    cli_env: KieEmulator, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert await asyncio.to_thread(_cli, argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" in err
    assert cli_env.stats.tasks_created == 0
    assert sum(cli_env.stats.requests.values()) == 0  # not even a balance read


async def test_positive_control_the_harness_sees_a_purchase(
    cli_env: KieEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(_cli, [*RUN, "--budget", "100", "--wait-timeout", "60", "--json", "--out", "o"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert cli_env.stats.tasks_created == 1


# -- a real process: nothing but the error line reaches the terminal ---------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([*RUN, "--offline", "--budget", "nan"], "--budget"),
        (["run-batch", "missing.jsonl", "--offline"], "missing.jsonl"),
        (["run-batch", "latin.jsonl", "--offline"], "UTF-8"),
        (["run-batch", "typo.jsonl", "--offline"], "did you mean 'options'"),
        (["validate", "--model", "kling-3.0-t2v", "--multi-prompt", "[{"], "--multi-prompt"),
        (["credits"], "base_url"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_subprocess_exit_2_and_no_traceback(tmp_path: Path, argv: list[str], expected: str) -> None:
    (tmp_path / "latin.jsonl").write_bytes(b'{"model_key": "nano-banana-2", "prompt": "caf\xe9"}\n')
    (tmp_path / "typo.jsonl").write_text('{"model_key": "nano-banana-2", "optons": {"resolution": "4K"}}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env["KIE_BASE_URL"] = "ftp://example.test"  # only `credits` reads it; the others fail before settings
    proc = subprocess.run(
        [sys.executable, "-m", "kie_async", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert expected in next(line for line in proc.stderr.splitlines() if "error:" in line), proc.stderr
    assert not (tmp_path / "outputs").exists()
