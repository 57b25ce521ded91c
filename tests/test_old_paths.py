"""Old module paths keep working after the move to layer folders, and say where the module lives now.

Every entry of ``kie_async._compat.MOVED_MODULES`` imports, warns once with a ``DeprecationWarning`` naming the new
home, and is the very module object at the new path. ``kie_async.pipeline`` and ``kie_async.catalogue`` were
modules and are packages now: their old names still resolve, with a warning. The public homes (``kie_async.errors``,
``kie_async.sync``, ``kie_async.types``, ``kie_async.session``) import without one.

Each check runs in a fresh interpreter: a module imported once is cached, and a cached import warns no more.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest

from kie_async._compat import MOVED_MODULES


def _run(code: str) -> Any:
    """Run ``code`` in a fresh interpreter; it prints one JSON value as its last line."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


OLD_PATHS = """
import importlib, json, sys, warnings

from kie_async._compat import MOVED_MODULES

results = {}
for old, new in sorted(MOVED_MODULES.items()):
    sys.modules.pop(old, None)  # an old path imported as a side effect of an earlier one would warn no more
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            module = importlib.import_module(old)
        except Exception as exc:
            results[old] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
    home = importlib.import_module(new)
    results[old] = {
        "same": module is home,
        "name": module.__name__,
        "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    }
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def old_path_results() -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = _run(OLD_PATHS)
    return results


def test_the_alias_table_is_not_empty_and_points_into_the_layers() -> None:
    assert len(MOVED_MODULES) >= 40
    layers = ("core", "wire", "catalogue", "ledger", "coordination", "client", "artifacts", "pipeline", "interfaces")
    for old, new in MOVED_MODULES.items():
        assert new.split(".")[1] in layers, f"{old} -> {new}: not a layer folder"


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_path_is_the_new_module_and_warns_naming_its_home(
    old: str, old_path_results: dict[str, dict[str, Any]]
) -> None:
    new = MOVED_MODULES[old]
    result = old_path_results[old]
    assert "error" not in result, f"import {old} failed: {result.get('error')}"
    assert result["same"], f"import {old} gave a module other than {new}"
    assert result["name"] == new
    ours = [message for category, message in result["warnings"] if category == "DeprecationWarning" and old in message]
    assert len(ours) == 1, f"import {old}: expected one DeprecationWarning about it, got {result['warnings']}"
    assert new in ours[0], f"the warning for {old} does not name {new}: {ours[0]!r}"


def test_from_an_old_path_import_a_name_and_a_module_inside_an_old_package() -> None:
    result = _run(
        """
        import json, warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from kie_async.normalize import normalize_request
            from kie_async.cli import _run_cmd
        import kie_async.catalogue.normalize as normalize
        import kie_async.interfaces.cli._run_cmd as run_cmd

        print(json.dumps({
            "name": normalize_request is normalize.normalize_request,
            "submodule": _run_cmd is run_cmd,
            "warnings": [str(w.message) for w in caught if w.category is DeprecationWarning],
        }))
        """
    )
    assert result["name"] and result["submodule"]
    assert any("kie_async.catalogue.normalize" in m for m in result["warnings"]), result["warnings"]
    assert any("kie_async.interfaces.cli" in m for m in result["warnings"]), result["warnings"]


@pytest.mark.parametrize(
    ("statement", "home"),
    [
        ("from kie_async.pipeline import run_pipeline as value", "kie_async.pipeline.run"),
        ("from kie_async.catalogue import render_markdown as value", "kie_async.catalogue.listing"),
    ],
)
def test_a_module_that_became_a_package_keeps_its_names(statement: str, home: str) -> None:
    name = statement.split()[3]
    result = _run(
        f"""
        import importlib, json, warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            {statement}
        print(json.dumps({{
            "same": value is getattr(importlib.import_module({home!r}), {name!r}),
            "warnings": [str(w.message) for w in caught if w.category is DeprecationWarning],
        }}))
        """
    )
    assert result["same"], f"{statement} is not {home}.{name}"
    assert any(f"{home}.{name}" in m for m in result["warnings"]), result["warnings"]


@pytest.mark.parametrize("module", ["kie_async.errors", "kie_async.sync", "kie_async.types", "kie_async.session"])
def test_public_homes_import_without_a_warning(module: str) -> None:
    result = _run(
        f"""
        import json, warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import {module}
        print(json.dumps([[w.category.__name__, str(w.message), w.filename] for w in caught]))
        """
    )
    ours = [w for w in result if w[0] == "DeprecationWarning" or "kie_async" in w[1] or "kie_async" in w[2]]
    assert not ours, f"import {module} warned: {ours}"


def test_an_old_path_leaves_the_module_its_own_spec() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("kie_async.normalize")
    new = importlib.import_module("kie_async.catalogue.normalize")
    assert old is new and new.__spec__ is not None and new.__spec__.name == "kie_async.catalogue.normalize"
