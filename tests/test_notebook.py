"""Notebook fit: docs/examples/notebook.ipynb runs in a real IPython kernel (top-level await, emulator), and the
HTML views of results are escaped, size-capped and free of URLs."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from kie_async import KieSession, PipelineOptions, RawUserRequest, run_many, run_pipeline
from kie_async.artifacts import ArtifactSettings
from kie_async.emulator import KieEmulator
from kie_async.interfaces.notebook import MAX_INLINE_IMAGE_BYTES, preview_data_uri, run_result_html, run_results_html
from kie_async.ledger.request_state import RequestState
from kie_async.pipeline.progress import BatchProgressBar
from kie_async.pipeline.run_models import RunResult, RunResults

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "examples" / "notebook.ipynb"


def test_the_example_notebook_runs_in_a_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("KIE_")]:
        monkeypatch.delenv(key)  # never live, never a stray key
    monkeypatch.setenv("KIE_EXAMPLES_GENERATION_SECONDS", "0.2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    sources = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "asyncio.run" not in sources and "await " in sources
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
        # the kernel must be this interpreter (the one with kie_async installed), whatever kernelspecs exist
        kernel_manager_class="jupyter_client.manager.KernelManager",
    )
    client.km = client.km or client.create_kernel_manager()
    client.km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    htmls = [o.data["text/html"] for o in outputs if "data" in o and "text/html" in o.data]
    card = next(h for h in htmls if "run folder" in h and "<table>" in h and "runs</b>" not in h)
    assert "succeeded" in card and re.search(r"data:image/(webp|png|jpeg);base64,", card) and "nano-banana-2" in card
    table = next(h for h in htmls if "3 runs</b>" in h)
    assert table.count("data:image/") == 3 and "succeeded 3" in table
    assert any("<progress" in h and "3/3" in h for h in htmls)  # the bar, redrawn in place, ends full
    assert any("image/jpeg" in o.get("data", {}) or "image/png" in o.get("data", {}) for o in outputs)
    assert not [h for h in htmls if "http://" in h]  # no URL in the HTML views (a signed link is a credential)
    assert (tmp_path / "outputs" / "notebook" / "runs").is_dir()


async def test_html_views_of_real_runs(emulator: KieEmulator, tmp_path: Path) -> None:
    options = PipelineOptions(artifacts=ArtifactSettings(root=str(tmp_path)))
    async with KieSession(emulator.settings()) as kie:
        image = await run_pipeline(
            RawUserRequest(model_key="nano-banana-2", prompt="<script>x</script>"), kie, options=options
        )
        video = await run_pipeline(
            RawUserRequest(model_key="kling-3.0", prompt="waves", options={"duration": 5}), kie, options=options
        )
        batch = await run_many(
            [RawUserRequest(model_key="nano-banana-2", prompt="a"), RawUserRequest(model_key="nano-banana-2")],
            kie,
            options=options,
        )
    card = image._repr_html_()
    assert image.succeeded and "<script>" not in card
    assert '<p class="kie-prompt">&lt;script&gt;x&lt;/script&gt;</p>' in card  # the prompt, escaped
    assert "(succeeded)" not in card and card.count(">succeeded<") == 1  # the status once
    assert 'class="kie-card"' in card and ".kie-card{" in card  # the gallery's look
    assert len(re.findall(r"data:image/(?:webp|png|jpeg);base64,", card)) == 1
    assert "http" not in card.replace("http-equiv", "")  # no output URL (signed links are credentials)
    assert video.succeeded and "no preview" in video._repr_html_()  # no ffmpeg, no cover: says so
    assert isinstance(batch, RunResults) and isinstance(batch, list)
    assert [r.status for r in batch] == ["succeeded", "blocked"] and batch.credits_charged == 8
    table = batch._repr_html_()
    assert "blocked 1" in table and "succeeded 1" in table and table.count("data:image/") == 1
    assert "(succeeded)" not in table and ">a</td>" in table  # status once; the prompt column


def _result(run_dir: Path | None, **extra: object) -> RunResult:
    return RunResult(
        status="succeeded",
        state=RequestState.SUCCEEDED,
        model_key="nano-banana-2",
        run_dir=str(run_dir) if run_dir else None,
        **extra,
    )  # type: ignore[arg-type]


def _manifest(run_dir: Path, derivative_path: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    derivative = {"name": "thumb", "path": derivative_path, "format": "webp", "width": 1, "height": 1, "bytes": 1}
    output = {
        "role": "output",
        "kind": "image",
        "path": "outputs/o.jpg",
        "stored_as": "hardlink",
        "derivatives": [derivative],
    }
    manifest = {
        "run_id": "r1",
        "status": "succeeded",
        "created_at": "2026-01-01T00:00:00Z",
        "recorded_at": "2026-01-01T00:00:00Z",
        "model_key": "nano-banana-2",
        "outputs": [output],
    }
    (run_dir / "run.json").write_text(json.dumps(manifest))


PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_hostile_run_folders_inline_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG_1PX)
    cases = {
        "escape": "../secret.png",  # outside the run folder
        "svg": "derivatives/t.svg",  # SVG can carry script: never inlined
        "huge": "derivatives/big.png",
        "lies": "derivatives/fake.webp",  # named like an image, is HTML
    }
    for name, rel in cases.items():
        run_dir = tmp_path / name
        _manifest(run_dir, rel)
        (run_dir / "derivatives").mkdir()
    (tmp_path / "svg" / "derivatives" / "t.svg").write_text('<svg onload="alert(1)"/>')
    (tmp_path / "huge" / "derivatives" / "big.png").write_bytes(PNG_1PX + b"\0" * MAX_INLINE_IMAGE_BYTES)
    (tmp_path / "lies" / "derivatives" / "fake.webp").write_text("<html><script>alert(1)</script></html>")
    for name in cases:
        assert preview_data_uri(_result(tmp_path / name)) is None, name
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "run.json").write_text("{not json")
    assert preview_data_uri(_result(tmp_path / "garbage")) is None
    assert preview_data_uri(_result(tmp_path / "missing")) is None and preview_data_uri(_result(None)) is None
    good = tmp_path / "good"
    _manifest(good, "derivatives/t.png")
    (good / "derivatives").mkdir()
    (good / "derivatives" / "t.png").write_bytes(PNG_1PX)
    assert preview_data_uri(_result(good)) == "data:image/png;base64," + base64.b64encode(PNG_1PX).decode()


def test_text_is_escaped_and_capped() -> None:
    evil = '"><img src=x onerror=alert(1)>' + "x" * 5000
    card = run_result_html(_result(None, error=evil, task_id="<b>t</b>"))
    assert "<img src=x" not in card and "&lt;b&gt;t&lt;/b&gt;" in card and len(card) < 3000
    many = [_result(None) for _ in range(500)]
    table = run_results_html(many)
    assert "… and 300 more" in table and "500 runs" in table


def test_terminal_progress_bar_draws_and_closes(capsys: pytest.CaptureFixture[str]) -> None:
    from kie_async.ledger.budget import BudgetSnapshot
    from kie_async.pipeline.fanout import BatchProgress

    bar = BatchProgressBar(2, notebook=False)
    snap = BudgetSnapshot(cap=None, reserved=0, spent=8)
    bar(
        BatchProgress(
            total=2,
            queued=0,
            preparing=0,
            submitted=0,
            generating=0,
            downloading=0,
            done=2,
            failed=0,
            skipped=0,
            credits_spent=8,
            budget=snap,
        )
    )
    bar.close()
    err = capsys.readouterr().err
    assert "2/2" in err and "done 2" in err


def test_a_fifo_run_json_does_not_hang_the_kernel(tmp_path: Path) -> None:
    run_dir = tmp_path / "fifo"
    run_dir.mkdir()
    os.mkfifo(run_dir / "run.json")
    assert preview_data_uri(_result(run_dir)) is None


def test_two_terminal_bars_at_once_do_not_crash() -> None:
    from kie_async.ledger.budget import BudgetSnapshot
    from kie_async.pipeline.fanout import BatchProgress

    first, second = BatchProgressBar(1, notebook=False), BatchProgressBar(1, notebook=False)
    snap = BudgetSnapshot(cap=None, reserved=0, spent=0)
    update = BatchProgress(
        total=1,
        queued=0,
        preparing=0,
        submitted=0,
        generating=0,
        downloading=0,
        done=1,
        failed=0,
        skipped=0,
        credits_spent=0,
        budget=snap,
    )
    first(update)
    second(update)
    second.close()
    first.close()
