"""Keep the README honest: its two opening commands are what CI runs, and its code blocks execute."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def fenced_after(marker: str) -> str:
    match = re.search(re.escape(marker) + r"\s*```bash\n(.+?)\n```", README, re.S)
    assert match, f"README has no bash block after {marker}"
    return match.group(1).strip()


def test_readme_opens_with_exactly_two_commands() -> None:
    head = README.split("## ", 1)[0]
    blocks = re.findall(r"```bash\n(.+?)\n```", head, re.S)
    assert blocks == [fenced_after("<!-- ci:setup -->"), fenced_after("<!-- ci:test -->")]
    assert all("\n" not in block for block in blocks)
    assert "kie-async demo" in blocks[0] and "pip install -e '.[dev]'" in blocks[0]
    assert blocks[1].endswith("python -m pytest")


def test_readme_names_a_plain_user_install_after_the_two_commands() -> None:
    """A user who only wants the library gets one line, after (never instead of) the two project commands."""
    head = README.split("## ", 1)[0]
    install = re.search(r"`pip install (kie-async)` .*?`pip install '(kie-async)\[([a-z,]+)\]'`", head, re.S)
    assert install, "README has no plain `pip install kie-async` line"
    assert install.start() > head.index("<!-- ci:test -->")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert install.group(1) == install.group(2) == project["name"]
    assert set(install.group(3).split(",")) <= set(project["optional-dependencies"]) - {"dev"}


def test_ci_runs_the_readme_commands_then_type_and_lint_gates() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "readme_command setup" in ci and "readme_command test" in ci
    assert "mypy --strict kie_async" in ci and "ruff check" in ci


def test_ci_installs_chromium_and_makes_its_absence_a_failure() -> None:
    """The gallery tests render pages in a real headless browser; in CI a missing one must fail, not skip."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "apt-get install -y chromium" in ci and "command -v chromium" in ci
    assert "export KIE_REQUIRE_BROWSER=1" in ci
    assert ci.index("export KIE_REQUIRE_BROWSER=1") < ci.index('bash -c "set -euo pipefail; $test_cmd"')


def test_ci_installs_redis_and_makes_its_absence_a_failure() -> None:
    """The coordination tests run against a real redis-server; in CI a missing one must fail, not skip."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "apt-get install -y redis-server" in ci and "command -v redis-server" in ci
    assert "export KIE_REQUIRE_REDIS=1" in ci
    assert ci.index("export KIE_REQUIRE_REDIS=1") < ci.index('bash -c "set -euo pipefail; $test_cmd"')


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.+?)\n```", README, re.S)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_blocks_run_offline(index: int, tmp_path: Path) -> None:
    script = tmp_path / f"readme_{index}.py"
    script.write_text(python_blocks()[index], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    for saved in re.findall(r"^saved (\S+)", done.stdout, re.M):
        assert (tmp_path / saved).read_bytes()[:4] == b"\x89PNG"
    if "run_many" in python_blocks()[index]:
        statuses = [line.split()[0] for line in done.stdout.splitlines()]
        assert sorted(statuses) == ["over_budget", "over_budget", "succeeded", "succeeded"], done.stdout


def other_bash_blocks() -> list[str]:
    body = README.split("## ", 1)[1]
    return re.findall(r"```bash\n(.+?)\n```", body, re.S)


@pytest.mark.parametrize("index", range(len(other_bash_blocks())))
async def test_readme_bash_blocks_run(index: int, tmp_path: Path) -> None:
    """Every other shell block runs too; the 'real key' one runs against an emulator that accepts its key."""
    block = other_bash_blocks()[index]
    key = re.search(r"KIE_API_KEY=(\S+)", block)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    async with KieEmulator(EmulatorConfig(api_key=key.group(1) if key else "unused")) as emulator:
        env.update(KIE_BASE_URL=emulator.base_url, KIE_UPLOAD_BASE_URL=emulator.upload_base_url)
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            block,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    assert proc.returncode == 0, err.decode()[-3000:]
    if "run-batch" in block:
        assert (tmp_path / "outputs" / "batch" / "index.jsonl").read_text().count("\n") == 2
    if "credits" in block:
        assert "credits:" in out.decode()


def test_readme_credits_command_offline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KIE_OUTPUT_DIR", str(tmp_path))  # the offline account lives under the output root
    assert main(["credits", "--offline", "--json"]) == 0
    assert (tmp_path / "emulator-state" / "ledger.json").is_file()
    assert json.loads(capsys.readouterr().out)["credits"] > 0


def test_demo_leaves_a_png_a_run_folder_and_an_index_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    path = re.search(r"^image: (.+)$", capsys.readouterr().out, re.M)
    assert path, "demo printed no image line"
    image = Path(path.group(1))
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run_dir = image.parent.parent
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["model_key"] == "nano-banana-2"
    # The demo's image is small: its web and thumb renditions may be the original itself (``reused``).
    derivatives = manifest["outputs"][0]["derivatives"]
    assert sorted(d["name"] for d in derivatives) == ["thumb", "web"]
    assert all((run_dir / d["path"]).is_file() for d in derivatives)
    index_lines = (tmp_path / "index.jsonl").read_text().splitlines()
    assert len(index_lines) == 1 and manifest["run_id"] in index_lines[0]
