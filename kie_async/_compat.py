"""Old module paths keep importing after the move to layer folders, with a ``DeprecationWarning`` naming the new home.

``import kie_async.normalize`` (and ``from kie_async.normalize import ...``) returns the very module object that
now lives at :mod:`kie_async.catalogue.normalize`, so identity checks, ``isinstance`` and monkeypatching keep
working. The alias is an import hook rather than a file per old path, so the package tree shows only the layers.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED_MODULES: dict[str, str] = {
    "kie_async._data": "kie_async.core.data",
    "kie_async._evidence": "kie_async.core.evidence",
    "kie_async._image_header": "kie_async.core.image_header",
    "kie_async._limits": "kie_async.core.limits",
    "kie_async._loop_state": "kie_async.core.loop_state",
    "kie_async._run_context": "kie_async.pipeline.run_context",
    "kie_async._threads": "kie_async.core.threads",
    "kie_async._tokens": "kie_async.core.tokens",
    "kie_async.api_models": "kie_async.wire.api_models",
    "kie_async.artifacts.redact": "kie_async.core.redact",
    "kie_async.budget": "kie_async.ledger.budget",
    "kie_async.callback_receiver": "kie_async.interfaces.callback_receiver",
    "kie_async.callbacks": "kie_async.wire.callbacks",
    "kie_async.cli": "kie_async.interfaces.cli",
    "kie_async.collect": "kie_async.pipeline.collect",
    "kie_async.download": "kie_async.wire.download",
    "kie_async.fanout": "kie_async.pipeline.fanout",
    "kie_async.fixtures": "kie_async.catalogue.fixtures",
    "kie_async.guides": "kie_async.catalogue.guides",
    "kie_async.handle": "kie_async.pipeline.handle",
    "kie_async.journal": "kie_async.ledger.journal",
    "kie_async.jsonl_log": "kie_async.core.jsonl_log",
    "kie_async.logs": "kie_async.core.logs",
    "kie_async.mcp_server": "kie_async.interfaces.mcp_server",
    "kie_async.media_sniff": "kie_async.core.media_sniff",
    "kie_async.model_data": "kie_async.catalogue.model_data",
    "kie_async.normalize": "kie_async.catalogue.normalize",
    "kie_async.notebook": "kie_async.interfaces.notebook",
    "kie_async.outputs": "kie_async.pipeline.outputs",
    "kie_async.owner_lock": "kie_async.core.owner_lock",
    "kie_async.payload": "kie_async.catalogue.payload",
    "kie_async.polling": "kie_async.wire.polling",
    "kie_async.preflight": "kie_async.catalogue.preflight",
    "kie_async.prepare": "kie_async.pipeline.prepare",
    "kie_async.presets": "kie_async.catalogue.presets",
    "kie_async.pricing": "kie_async.catalogue.pricing",
    "kie_async.progress": "kie_async.pipeline.progress",
    "kie_async.provider_pages": "kie_async.core.provider_pages",
    "kie_async.purchase": "kie_async.pipeline.purchase",
    "kie_async.rate_limit": "kie_async.wire.rate_limit",
    "kie_async.request_models": "kie_async.catalogue.request_models",
    "kie_async.request_state": "kie_async.ledger.request_state",
    "kie_async.retry": "kie_async.wire.retry",
    "kie_async.run_models": "kie_async.pipeline.run_models",
    "kie_async.settings": "kie_async.core.settings",
    "kie_async.spec_drift": "kie_async.catalogue.spec_drift",
    "kie_async.spec_import": "kie_async.catalogue.spec_import",
    "kie_async.specs": "kie_async.catalogue.specs",
    "kie_async.submit": "kie_async.pipeline.submit",
    "kie_async.task_apis": "kie_async.wire.task_apis",
    "kie_async.transport": "kie_async.wire.transport",
    "kie_async.validate": "kie_async.catalogue.validate",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new_name: str) -> None:
        self.new_name = new_name
        self._own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new_name}; import it from there",
            DeprecationWarning,
            stacklevel=2,  # warnings skips importlib's own frames: this lands on the import line
        )
        module = importlib.import_module(self.new_name)
        self._own_spec = module.__spec__  # the import system sets __spec__ to the alias's: put it back after
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the module ran under its new name); only its own ``__spec__`` is restored."""
        module.__spec__ = self._own_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new_name = _new_name(fullname)
        if new_name is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new_name))


def _new_name(fullname: str) -> str | None:
    """The new home of an old module path, or of a module inside an old package (``kie_async.cli._run_cmd``)."""
    if fullname in MOVED_MODULES:
        return MOVED_MODULES[fullname]
    package = fullname.rpartition(".")[0]
    while package:
        if package in MOVED_MODULES:
            return MOVED_MODULES[package] + fullname[len(package) :]
        package = package.rpartition(".")[0]
    return None


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` once (``import kie_async`` calls it)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())  # first: it answers only for old paths
