"""CLI: models, validate, estimate and pricing refresh, readable and --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kie_async.catalogue.pricing import load_snapshot_file
from kie_async.interfaces.cli import main

FIXTURE = Path(__file__).parent / "data" / "pricing_api_fixture.json"


def test_models_lists_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_key = {r["key"]: r for r in rows}
    assert len(by_key) >= 11
    assert by_key["nano-banana-2"]["family"] == "nano-banana" and by_key["nano-banana-2"]["priced"] is True
    assert by_key["kling-3.0-i2v"]["task_modes"] == {
        "image_to_video": "kling-3.0/video",
        "first_last_frames": "kling-3.0/video",
    }


def test_models_readable_and_detail(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert "nano-banana-2" in capsys.readouterr().out
    assert main(["models", "kling-3.0-motion"]) == 0
    out = capsys.readouterr().out
    assert "background_source" in out and "UNCONFIRMED" in out
    assert main(["models", "nope"]) == 1


def test_models_detail_json_for_alias(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "kling-3.0", "--json"]) == 0
    specs = json.loads(capsys.readouterr().out)
    assert [s["key"] for s in specs] == ["kling-3.0-i2v", "kling-3.0-t2v"]


def test_validate_ready_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "validate",
            "--model",
            "kling-3.0",
            "--prompt",
            "a cat",
            "--image",
            "https://c.test/a.png",
            "--option",
            "duration=10",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["state"] == "ready_with_defaults"
    assert result["model_key"] == "kling-3.0-i2v"
    assert result["normalized"]["options"]["duration"] == 10


def test_validate_invalid_exit_one_and_readable(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "--model", "kling-2.6-t2v", "--prompt", "x", "--option", "duration=7"])
    assert code == 1
    out = capsys.readouterr().out
    assert "invalid" in out and "duration" in out


def test_validate_roles_and_json_options(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "validate",
            "--model",
            "seedance",
            "--prompt",
            "abc",
            "--image",
            "reference=https://c.test/a.png",
            "--video",
            "https://c.test/v.mp4",
            "--json",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["task_mode"] == "multimodal_reference"
    code = main(
        [
            "validate",
            "--model",
            "kling-3.0-t2v",
            "--multi-prompt",
            '[{"prompt": "a", "duration": 3}]',
            "--option",
            'kling_elements=[{"name": "x", "description": "y", "element_input_urls": ["https://c.test/a.png"]}]',
            "--json",
        ]
    )
    assert code == 0, capsys.readouterr().out


def test_validate_local_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["validate", "--model", "kling-2.6-i2v", "--prompt", "x", "--image", str(tmp_path / "no.png"), "--json"]
    assert main(args) == 1
    assert json.loads(capsys.readouterr().out)["impossible_inputs"][0]["rule"] == "file_exists"
    assert main([*args, "--no-file-check"]) == 0


def test_estimate_json_and_gate(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "estimate",
            "--model",
            "kling-3.0-t2v",
            "--prompt",
            "x",
            "--option",
            "duration=10",
            "--option",
            "sound=true",
            "--credits",
            "1000",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["estimate"]["credits"] == 270
    assert result["allowed"] is True
    code = main(["estimate", "--model", "kling-3.0-t2v", "--prompt", "x", "--budget", "10"])
    assert code == 1
    out = capsys.readouterr().out
    assert "over_budget" in out and "blocked" in out


def test_bad_option_syntax() -> None:
    with pytest.raises(SystemExit):
        main(["validate", "--model", "nano-banana-2", "--option", "resolution"])


def test_pricing_refresh_writes_a_dated_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["pricing", "refresh", "--from", str(FIXTURE), "--out", str(tmp_path), "--date", "2026-11-28", "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    path = Path(report["path"])
    assert path == tmp_path / "2026-11-28_pricing_api.yaml"
    assert report["unmatched_records"] == ["Suno v5, music"]
    snapshot = load_snapshot_file(path)
    assert snapshot.captured_on.isoformat() == "2026-11-28"
    assert (
        main(["pricing", "refresh", "--from", str(FIXTURE), "--out", str(tmp_path / "h"), "--date", "2026-11-29"]) == 0
    )
    assert "updated 6 rule(s)" in capsys.readouterr().out


def test_pricing_refresh_bad_file_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["pricing", "refresh", "--from", str(bad), "--out", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err
