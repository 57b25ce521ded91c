"""``import kie_async`` stays cheap: names load on first use, and every public name still imports.

The heavy optional parts (the callback server's ``aiohttp.web``, ``rich``, ``ruamel.yaml``, the artifact and
journal models) must not load with the package; ``from kie_async import X`` must work for every exported name;
the ``TYPE_CHECKING`` imports type checkers read must name the same modules as the runtime map.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import kie_async

INIT = Path(kie_async.__file__)
HEAVY = [
    "aiohttp.web",
    "rich",
    "ruamel.yaml",
    "importlib.metadata",
    "kie_async.artifacts",
    "kie_async.ledger.journal",
    "kie_async.interfaces.callback_receiver",
    "kie_async.catalogue.pricing",
    "pyvips",
]


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


def test_import_kie_async_loads_none_of_the_heavy_parts() -> None:
    loaded = _loaded_after("import kie_async")
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_a_session_script_does_not_load_the_callback_server_rich_or_yaml() -> None:
    loaded = _loaded_after("from kie_async import KieSession, KieSettings; KieSession(KieSettings())")
    assert sorted(m for m in ("aiohttp.web", "rich", "ruamel.yaml", "pyvips") if m in loaded) == []


def test_every_exported_name_imports_from_the_package() -> None:
    names = [*kie_async.__all__, "KieEmulator", "EmulatorConfig"]
    code = "import kie_async\n" + "".join(f"from kie_async import {name}\n" for name in names)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert set(kie_async.__all__) <= set(dir(kie_async))


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        kie_async.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("an unknown name resolved")


def test_type_checking_imports_match_the_runtime_map() -> None:
    tree = ast.parse(INIT.read_text())
    declared: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module
                for alias in stmt.names:
                    declared[alias.asname or alias.name] = stmt.module
    runtime = {k: v for k, v in kie_async._EXPORTS.items() if v != "kie_async.emulator"}
    assert declared == runtime
    assert set(kie_async.__all__) == set(runtime) | {"__version__"}


def test_submodules_stay_reachable_as_attributes() -> None:
    code = "import kie_async; print(kie_async.artifacts.ArtifactSettings.__name__, kie_async.errors.KieError.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["ArtifactSettings", "KieError"]
    try:
        kie_async.no_such_module  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("an unknown submodule resolved")


def test_the_top_level_is_small_and_documented_on_one_page() -> None:
    """``docs/api.md`` lists exactly ``__all__`` (in backticks), and the list stays one a user can hold."""
    assert len(kie_async.__all__) <= 50
    page = (INIT.parents[1] / "docs" / "api.md").read_text()
    table = "\n".join(line for line in page.split("## Where the rest lives")[0].splitlines() if line.startswith("|"))
    import re

    listed = set(re.findall(r"`(\w+)`", table)) & (set(kie_async.__all__) | set(kie_async._MOVED))
    assert listed == set(kie_async.__all__)


def test_names_that_left_the_top_level_still_import_and_say_where_they_live() -> None:
    import warnings

    assert not set(kie_async._MOVED) & set(kie_async.__all__)
    for name, home in kie_async._MOVED.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = getattr(kie_async, name)
        assert value is getattr(__import__(home, fromlist=[name]), name), name
        assert len(caught) == 1 and caught[0].category is DeprecationWarning and home in str(caught[0].message)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kie_async.wait_for_task  # type: ignore[attr-defined]  # noqa: B018
    assert "KieSession.wait_for_task" in str(caught[0].message)


def test_kie_async_types_holds_the_models_behind_the_surface() -> None:
    import kie_async.types as types

    assert {"TaskRecord", "TaskState", "RunOutput", "RunResults", "RequestState"} <= set(types.__all__)
    for name in types.__all__:
        assert getattr(types, name) is not None
