"""Run artifacts: a self-contained folder per run, pyvips derivatives, an append-only index and queries.

Names load on first use (module ``__getattr__``), so a stage that needs one piece (the media probe, the layout)
does not pay for the index, the queries and the writer; the SDK's own modules import from the submodule that
defines a name.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kie_async.artifacts.derivatives import (
        DerivativeSet,
        DerivativeSource,
        generate_derivatives,
    )
    from kie_async.artifacts.exceptions import KieArtifactError
    from kie_async.artifacts.index import (
        IndexAsset,
        IndexEntry,
        IndexReadResult,
        RebuildReport,
        SkippedLine,
        append_index_entry,
        clear_index_cache,
        read_index,
        rebuild_artifact_index,
        rebuild_artifact_index_sync,
    )
    from kie_async.artifacts.manifest import (
        ArtifactFile,
        ArtifactKind,
        ArtifactSource,
        DerivativeRecord,
        MediaInfo,
        PromptRecord,
        ProviderTrace,
        RunArtifact,
        RunArtifactCreateRequest,
        RunManifest,
        RunStatus,
        StoredAs,
    )
    from kie_async.artifacts.notes import update_run_notes, update_run_tags
    from kie_async.artifacts.query import (
        AssetRef,
        get_latest_assets,
        get_latest_assets_sync,
        get_latest_successful_run,
        list_recent_runs,
        load_run,
        load_run_sync,
        print_run_summary,
        query_runs,
        query_runs_sync,
    )
    from kie_async.artifacts.settings import ArtifactDerivativeSettings, ArtifactSettings
    from kie_async.artifacts.writer import (
        create_run_artifact,
        make_run_id,
        regenerate_run_derivatives,
    )

_HOMES: dict[str, str] = {
    "ArtifactDerivativeSettings": "settings",
    "ArtifactFile": "manifest",
    "ArtifactKind": "manifest",
    "ArtifactSettings": "settings",
    "ArtifactSource": "manifest",
    "AssetRef": "query",
    "DerivativeRecord": "manifest",
    "DerivativeSet": "derivatives",
    "DerivativeSource": "derivatives",
    "IndexAsset": "index",
    "IndexEntry": "index",
    "IndexReadResult": "index",
    "KieArtifactError": "exceptions",
    "MediaInfo": "manifest",
    "PromptRecord": "manifest",
    "ProviderTrace": "manifest",
    "RebuildReport": "index",
    "RunArtifact": "manifest",
    "RunArtifactCreateRequest": "manifest",
    "RunManifest": "manifest",
    "RunStatus": "manifest",
    "SkippedLine": "index",
    "StoredAs": "manifest",
    "append_index_entry": "index",
    "clear_index_cache": "index",
    "create_run_artifact": "writer",
    "generate_derivatives": "derivatives",
    "get_latest_assets": "query",
    "get_latest_assets_sync": "query",
    "get_latest_successful_run": "query",
    "list_recent_runs": "query",
    "load_run": "query",
    "load_run_sync": "query",
    "make_run_id": "writer",
    "print_run_summary": "query",
    "query_runs": "query",
    "query_runs_sync": "query",
    "read_index": "index",
    "rebuild_artifact_index": "index",
    "rebuild_artifact_index_sync": "index",
    "regenerate_run_derivatives": "writer",
    "update_run_notes": "notes",
    "update_run_tags": "notes",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kie_async.artifacts' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"kie_async.artifacts.{home}"), name)
    globals()[name] = value  # the next lookup is a plain attribute read
    return value


__all__ = [
    "ArtifactDerivativeSettings",
    "ArtifactFile",
    "ArtifactKind",
    "ArtifactSettings",
    "ArtifactSource",
    "AssetRef",
    "DerivativeRecord",
    "DerivativeSet",
    "DerivativeSource",
    "IndexAsset",
    "IndexEntry",
    "IndexReadResult",
    "KieArtifactError",
    "MediaInfo",
    "PromptRecord",
    "ProviderTrace",
    "RebuildReport",
    "RunArtifact",
    "RunArtifactCreateRequest",
    "RunManifest",
    "RunStatus",
    "SkippedLine",
    "StoredAs",
    "append_index_entry",
    "clear_index_cache",
    "create_run_artifact",
    "generate_derivatives",
    "get_latest_assets",
    "get_latest_assets_sync",
    "get_latest_successful_run",
    "list_recent_runs",
    "load_run",
    "load_run_sync",
    "make_run_id",
    "print_run_summary",
    "query_runs",
    "query_runs_sync",
    "read_index",
    "rebuild_artifact_index",
    "rebuild_artifact_index_sync",
    "regenerate_run_derivatives",
    "update_run_notes",
    "update_run_tags",
]
