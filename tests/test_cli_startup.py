"""CLI start-up: what ``--version`` and ``estimate`` import, the subcommand table, and the compiled spec index.

Not timings (``benchmarks/bench_cli.py`` measures those): which modules a call loads is what makes it fast or
slow, and that can be checked exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kie_async.catalogue.specs import clear_registry_cache, load_registry
from kie_async.core import compiled_cache
from kie_async.interfaces.cli import _commands, build_parser, main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "model_specs"
ESTIMATE = ["estimate", "--model", "nano-banana-2", "--prompt", "a lighthouse"]


def _modules_after(argv: list[str], cache: Path) -> tuple[set[str], str]:
    """Run the CLI as the console script does, in a fresh interpreter; the modules loaded, and its stdout."""
    code = (
        "import sys, json\nfrom kie_async.interfaces.cli import main\n"
        "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print('\\nMODULES ' + json.dumps(sorted(sys.modules)))\nsys.exit(code)"
    )
    env = {**os.environ, "KIE_ASYNC_CACHE_DIR": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    output, _, modules = done.stdout.rpartition("\nMODULES ")
    return set(json.loads(modules)), output


def _loaded(modules: set[str], names: list[str]) -> list[str]:
    return sorted(name for name in names if name in modules or any(m.startswith(name + ".") for m in modules))


def test_version_imports_nothing_but_the_version(tmp_path: Path) -> None:
    modules, output = _modules_after(["--version"], tmp_path)
    assert output.splitlines()[0].startswith("kie-async ")
    heavy = [
        "aiohttp",
        "pyvips",
        "pydantic",
        "rich",
        "ruamel",
        "asyncio",
        "argparse",
        "typing",
        "kie_async.core",
        "kie_async.catalogue",
        "kie_async.interfaces.cli._main",
    ]
    assert _loaded(modules, heavy) == []


def test_help_lists_every_command_without_importing_them(tmp_path: Path) -> None:
    modules, output = _modules_after(["--help"], tmp_path)
    assert all(name in output for name in _commands.COMMANDS)
    assert _loaded(modules, [_commands.module_of(name) for name in _commands.COMMANDS]) == []
    assert _loaded(modules, ["aiohttp", "rich", "kie_async.catalogue"]) == []


def test_version_details_name_aiohttp_and_libvips(tmp_path: Path) -> None:
    modules, output = _modules_after(["--version", "--details"], tmp_path)
    assert output.splitlines()[2].startswith("aiohttp ") and output.splitlines()[3].startswith("libvips ")
    assert "aiohttp" in modules


def test_estimate_imports_only_what_it_prices_with(tmp_path: Path) -> None:
    _modules_after(ESTIMATE, tmp_path)  # the first call compiles the spec index and the pricing snapshot
    modules, output = _modules_after(ESTIMATE, tmp_path)
    assert "estimate 8 credits" in output
    heavy = [
        "aiohttp",
        "pyvips",
        "rich",
        "ruamel",
        "kie_async.client",
        "kie_async.pipeline",
        "kie_async.artifacts",
        "kie_async.ledger",
        "kie_async.emulator",
        "kie_async.catalogue.fixtures",
        "kie_async.catalogue.spec_import",
        "kie_async.interfaces.cli._run_cmd",
        "kie_async.interfaces.cli._models_cmd",
        "kie_async.interfaces.cli._live",
    ]
    assert _loaded(modules, heavy) == []


def test_the_first_estimate_parses_yaml_and_writes_the_index(tmp_path: Path) -> None:
    modules, _ = _modules_after(ESTIMATE, tmp_path)
    assert "ruamel.yaml" in modules  # no index yet: the specs are parsed (and checked) once
    assert sorted(p.name.split("-")[0] for p in tmp_path.glob("*.json")) == ["model", "pricing"]


def test_the_table_names_every_command_its_module_registers() -> None:
    for module in _commands.all_modules():
        sub = argparse.ArgumentParser().add_subparsers()
        __import__(module, fromlist=["register"]).register(sub)
        registered = {action.dest: action.help for action in sub._choices_actions}
        expected = {
            name: help_text
            for name, (mod, help_text) in _commands.COMMANDS.items()
            if _commands.module_of(name) == module
        }
        assert registered == expected, module
    full = build_parser()
    assert [a.dest for a in full._subparsers._group_actions[0]._choices_actions] == list(_commands.COMMANDS)  # type: ignore[union-attr]


def test_a_mistyped_command_gets_a_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["estimmate", "--model", "x"])
    assert exit_info.value.code == 2
    assert "unknown command 'estimmate': did you mean estimate?" in capsys.readouterr().err


# -- the compiled spec index -------------------------------------------------------------------------------------


@pytest.fixture
def spec_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "specs"
    folder.mkdir()
    for name in ("nano-banana-2.yaml", "nano-banana-pro.yaml", "flux-2-pro-t2i.yaml"):
        shutil.copy(SPECS / name, folder / name)
    monkeypatch.setenv(compiled_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    clear_registry_cache()
    yield folder
    clear_registry_cache()


def _index_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("model-specs-*.json"))


def test_the_index_is_keyed_by_content_and_rebuilt_when_a_spec_changes(spec_copy: Path, tmp_path: Path) -> None:
    assert load_registry(spec_copy).get("nano-banana-2").label == "Nano Banana 2"
    [first] = _index_files(tmp_path)
    clear_registry_cache()
    from_index = load_registry(spec_copy)
    assert from_index.get("nano-banana-2").label == "Nano Banana 2"  # read back from the index
    assert _index_files(tmp_path) == [first]
    spec = spec_copy / "nano-banana-2.yaml"
    spec.write_text(spec.read_text().replace("label: Nano Banana 2", "label: Nano Banana Two"))
    clear_registry_cache()
    assert load_registry(spec_copy).get("nano-banana-2").label == "Nano Banana Two"
    assert len(_index_files(tmp_path)) == 2 and first in _index_files(tmp_path)


def test_a_spec_from_the_index_is_checked_when_first_asked_for(spec_copy: Path, tmp_path: Path) -> None:
    load_registry(spec_copy)
    clear_registry_cache()
    registry = load_registry(spec_copy)
    assert registry.model_keys() == ["flux-2-pro-t2i", "nano-banana-2", "nano-banana-pro"]
    assert [s.key for s in registry.candidates("nano-banana-2")] == ["nano-banana-2"]
    assert registry.suggest("nano-banan") == ["nano-banana-2", "nano-banana-pro"]
    with pytest.raises(KeyError, match="did you mean 'nano-banana-2'"):
        registry.get("nano-banana-3")


def test_a_torn_or_foreign_index_file_is_ignored(spec_copy: Path, tmp_path: Path) -> None:
    load_registry(spec_copy)
    [index] = _index_files(tmp_path)
    index.write_bytes(index.read_bytes()[: len(index.read_bytes()) // 2])
    clear_registry_cache()
    assert load_registry(spec_copy).get("flux-2-pro-t2i").key == "flux-2-pro-t2i"  # parsed again
    assert json.loads(index.read_bytes().split(b"\n", 1)[0])["format"] == compiled_cache.FORMAT  # rewritten whole


def test_a_bad_spec_still_fails_loudly_with_its_file(spec_copy: Path) -> None:
    (spec_copy / "flux-2-pro-t2i.yaml").write_text("key: flux-2-pro\nlabel: [unclosed\n")
    from kie_async.catalogue.specs import SpecError

    with pytest.raises(SpecError, match=r"flux-2-pro-t2i\.yaml"):
        load_registry(spec_copy)


def test_the_cache_can_be_turned_off(spec_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compiled_cache.CACHE_DIR_ENV, "off")
    assert load_registry(spec_copy).get("nano-banana-2").key == "nano-banana-2"
    assert not (tmp_path / "cache").exists()


def test_several_processes_building_the_index_at_once_all_succeed(spec_copy: Path, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom kie_async.catalogue.specs import load_registry\n"
        "r = load_registry(sys.argv[1])\nprint(len(r.model_keys()), r.get('nano-banana-2').label)"
    )
    env = {**os.environ, compiled_cache.CACHE_DIR_ENV: str(tmp_path / "cache")}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(spec_copy)], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4
    assert outputs == ["3 Nano Banana 2"] * 4
    assert len(_index_files(tmp_path)) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")] == []
    clear_registry_cache()
    assert load_registry(spec_copy).get("nano-banana-pro").key == "nano-banana-pro"


def test_the_worker_gives_the_users_code_back_the_pydantic_plugins_the_command_line_turned_off() -> None:
    """``kie-async`` turns pydantic plugins off for its own start-up; ``kie-async worker`` runs the user's tasks in
    the same process (the engine's worker replaces it), where instrumentation such as a plugin must work."""
    from kie_async.interfaces.cli import plugins_env_for_user_code

    ours = {"PYDANTIC_DISABLE_PLUGINS": "__all__", "KIE_ASYNC_PLUGINS_OFF": "1", "PATH": "/bin"}
    assert plugins_env_for_user_code(ours) == {"PATH": "/bin"}
    theirs = {"PYDANTIC_DISABLE_PLUGINS": "logfire", "PATH": "/bin"}  # the user's own choice stays
    assert plugins_env_for_user_code(theirs) == theirs
    code = (
        "import os, kie_async.interfaces.cli as c; c.main(['--version']); "
        "print(os.environ.get('KIE_ASYNC_PLUGINS_OFF'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("None")  # called with argv (a library use): the environment is left alone
