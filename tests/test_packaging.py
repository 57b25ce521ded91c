"""The wheel carries the root data folders (one copy, mapped into the package), py.typed and the emulator's
sample video, and an installed copy finds its data without the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_data_and_installed_copy_uses_it(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("kie_async-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("model_specs", "prompt_presets", "pricing"):
        shipped = {n for n in names if n.startswith(f"kie_async/_data/{folder}/")}
        on_disk = {
            f"kie_async/_data/{folder}/{p.relative_to(ROOT / folder).as_posix()}"
            for p in (ROOT / folder).rglob("*")
            if p.is_file()
        }  # model_specs/chat/ included
        assert shipped == on_disk, f"{folder}: wheel and repo differ"
    assert {
        "kie_async/py.typed",
        "kie_async/emulator/assets/sample.mp4",
        "kie_async/emulator/pricing_catalogue.json",
        "kie_async/emulator/provider_schemas/__init__.py",
        "kie_async/catalogue/catalogue_fixtures.yaml",
        "kie_async/_data/model_specs/chat/gpt-codex.yaml",
        "kie_async/emulator/chat_schemas/market--codex--gpt-codex.json",
    } <= names
    schemas = ROOT / "kie_async" / "emulator" / "provider_schemas"
    bundled = {p.relative_to(ROOT).as_posix() for p in schemas.rglob("*.json")}
    assert bundled and bundled <= names, "the emulator's provider schemas must ship in the wheel"

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    probe = (
        "from kie_async.core.data import data_dir; from kie_async.catalogue.specs import load_registry; "
        "print(data_dir('model_specs')); print(len(load_registry().specs)); "
        "from kie_async.emulator.provider_schemas import load_provider_schemas; "
        "assert load_provider_schemas().for_model('nano-banana-2') is not None"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    where, count = done.stdout.split()
    assert Path(where).is_relative_to(target) and int(count) == len(list((ROOT / "model_specs").glob("*.yaml")))
