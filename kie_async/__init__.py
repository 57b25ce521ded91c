"""kie-async: an asyncio-native client SDK for Kie.ai.

The top level holds what a user reaches for (``docs/api.md`` lists it, by task): the session and its settings,
the request, the checks that come before money, the three ways to run (``run_pipeline`` for one request with a
record, ``run_many`` for a batch, ``KieSession.submit`` for a bare task handle), callbacks, run records and the
errors worth catching. The models behind them live in :mod:`kie_async.types`, every error in
:mod:`kie_async.core.errors`, and the step-by-step functions in the module named for their step.

Names load on first use (module ``__getattr__``): ``import kie_async`` costs about what its dependencies do.
Names that used to live here still import, with a ``DeprecationWarning`` naming their home.
"""

import warnings
from typing import TYPE_CHECKING

from kie_async import _compat
from kie_async._version import __version__

_compat.install()

if TYPE_CHECKING:
    from kie_async.artifacts import (
        ArtifactSettings,
        load_run,
        query_runs,
        update_run_notes,
        update_run_tags,
    )
    from kie_async.catalogue.blocked import (
        KieRequestBlockedError,
    )
    from kie_async.catalogue.preflight import (
        PreflightResult,
        PreflightThresholds,
        run_preflight,
    )
    from kie_async.catalogue.pricing import (
        CostEstimate,
        estimate_request_cost,
    )
    from kie_async.catalogue.request_models import (
        MediaInput,
        RawUserRequest,
        ValidationResult,
    )
    from kie_async.catalogue.validate import (
        validate_request,
    )
    from kie_async.core.errors import (
        KieAPIStatusError,
        KieAuthenticationError,
        KieConfigError,
        KieConnectionError,
        KieDownloadError,
        KieError,
        KieInputError,
        KieInsufficientCreditsError,
        KieJournalBusyError,
        KieRateLimitError,
        KieServerError,
        KieSubmissionUncertainError,
        KieTaskFailedError,
        KieTimeoutError,
        KieValidationError,
    )
    from kie_async.core.settings import (
        KieSettings,
        PollSettings,
        RateLimitSettings,
        RetrySettings,
    )
    from kie_async.interfaces.callback_receiver import (
        CallbackReceiver,
    )
    from kie_async.ledger.budget import (
        CreditBudget,
    )
    from kie_async.pipeline.fanout import (
        BatchProgress,
        run_many,
    )
    from kie_async.pipeline.handle import (
        TaskHandle,
        TaskOutcome,
    )
    from kie_async.pipeline.outputs import (
        FileOutput,
    )
    from kie_async.pipeline.run import (
        run_pipeline,
    )
    from kie_async.pipeline.run_models import (
        PipelineOptions,
        RunResult,
    )
    from kie_async.session import (
        KieSession,
    )
    from kie_async.wire.api_models import (
        CallbackEvent,
    )
    from kie_async.wire.callbacks import (
        verify_callback,
    )

_EXPORTS: dict[str, str] = {
    "KieSession": "kie_async.session",
    "KieSettings": "kie_async.core.settings",
    "PollSettings": "kie_async.core.settings",
    "RetrySettings": "kie_async.core.settings",
    "RateLimitSettings": "kie_async.core.settings",
    "RawUserRequest": "kie_async.catalogue.request_models",
    "MediaInput": "kie_async.catalogue.request_models",
    "validate_request": "kie_async.catalogue.validate",
    "ValidationResult": "kie_async.catalogue.request_models",
    "estimate_request_cost": "kie_async.catalogue.pricing",
    "CostEstimate": "kie_async.catalogue.pricing",
    "run_preflight": "kie_async.catalogue.preflight",
    "PreflightResult": "kie_async.catalogue.preflight",
    "PreflightThresholds": "kie_async.catalogue.preflight",
    "CreditBudget": "kie_async.ledger.budget",
    "run_pipeline": "kie_async.pipeline.run",
    "PipelineOptions": "kie_async.pipeline.run_models",
    "RunResult": "kie_async.pipeline.run_models",
    "run_many": "kie_async.pipeline.fanout",
    "BatchProgress": "kie_async.pipeline.fanout",
    "TaskHandle": "kie_async.pipeline.handle",
    "TaskOutcome": "kie_async.pipeline.handle",
    "FileOutput": "kie_async.pipeline.outputs",
    "verify_callback": "kie_async.wire.callbacks",
    "CallbackEvent": "kie_async.wire.api_models",
    "CallbackReceiver": "kie_async.interfaces.callback_receiver",
    "ArtifactSettings": "kie_async.artifacts",
    "query_runs": "kie_async.artifacts",
    "load_run": "kie_async.artifacts",
    "update_run_notes": "kie_async.artifacts",
    "update_run_tags": "kie_async.artifacts",
    "KieError": "kie_async.core.errors",
    "KieConfigError": "kie_async.core.errors",
    "KieInputError": "kie_async.core.errors",
    "KieRequestBlockedError": "kie_async.catalogue.blocked",
    "KieConnectionError": "kie_async.core.errors",
    "KieSubmissionUncertainError": "kie_async.core.errors",
    "KieTimeoutError": "kie_async.core.errors",
    "KieAPIStatusError": "kie_async.core.errors",
    "KieAuthenticationError": "kie_async.core.errors",
    "KieInsufficientCreditsError": "kie_async.core.errors",
    "KieRateLimitError": "kie_async.core.errors",
    "KieValidationError": "kie_async.core.errors",
    "KieServerError": "kie_async.core.errors",
    "KieTaskFailedError": "kie_async.core.errors",
    "KieDownloadError": "kie_async.core.errors",
    "KieJournalBusyError": "kie_async.core.errors",
    "KieEmulator": "kie_async.emulator",
    "EmulatorConfig": "kie_async.emulator",
}
"""Public name -> the module defining it (the emulator is reachable but not in ``__all__``)."""

_MOVED: dict[str, str] = {
    "ArtifactDerivativeSettings": "kie_async.types",
    "ArtifactKind": "kie_async.types",
    "ArtifactSource": "kie_async.types",
    "AssetRef": "kie_async.types",
    "CallbackReplayGuard": "kie_async.wire.callbacks",
    "CreateTaskPayload": "kie_async.types",
    "CreditBalance": "kie_async.types",
    "CreditSource": "kie_async.types",
    "DownloadResult": "kie_async.types",
    "IndexEntry": "kie_async.types",
    "KIE_REQUEST_PARAM": "kie_async.wire.callbacks",
    "KieArtifactError": "kie_async.artifacts",
    "KieBadRequestError": "kie_async.core.errors",
    "KieCallbackBodyError": "kie_async.core.errors",
    "KieCallbackVerificationError": "kie_async.core.errors",
    "KieDownloadContentError": "kie_async.core.errors",
    "KieDownloadURLError": "kie_async.core.errors",
    "KieNotFoundError": "kie_async.core.errors",
    "KieResponseShapeError": "kie_async.core.errors",
    "KieUsageLimitError": "kie_async.core.errors",
    "MediaNotUploadedError": "kie_async.catalogue.payload",
    "NormalizedRequest": "kie_async.types",
    "PipelineHooks": "kie_async.types",
    "PreparedRequest": "kie_async.types",
    "PromptContext": "kie_async.types",
    "PromptEnhancementPreview": "kie_async.types",
    "PromptRecord": "kie_async.types",
    "ProviderTrace": "kie_async.types",
    "REQUEST_FIXTURES": "kie_async.catalogue.fixtures",
    "RequestNotReadyError": "kie_async.catalogue.payload",
    "RequestState": "kie_async.types",
    "RetryPolicy": "kie_async.types",
    "RunArtifact": "kie_async.types",
    "RunArtifactCreateRequest": "kie_async.types",
    "RunManifest": "kie_async.types",
    "RunOutput": "kie_async.types",
    "RunStatus": "kie_async.types",
    "SessionStats": "kie_async.types",
    "StageOutcome": "kie_async.types",
    "TaskCreated": "kie_async.types",
    "TaskProgress": "kie_async.types",
    "TaskRecord": "kie_async.types",
    "TaskResult": "kie_async.types",
    "TaskState": "kie_async.types",
    "UploadedFile": "kie_async.types",
    "add_callback_route": "kie_async.interfaces.callback_receiver",
    "aload_registry": "kie_async.catalogue.specs",
    "apply_enhanced_prompt": "kie_async.catalogue.presets",
    "build_submission_payload": "kie_async.catalogue.payload",
    "check_wire_payload": "kie_async.catalogue.payload",
    "create_run_artifact": "kie_async.artifacts",
    "download_output_file": "kie_async.pipeline.submit",
    "dry_run_prompt_enhancement": "kie_async.catalogue.presets",
    "estimate_wire_cost": "kie_async.catalogue.pricing",
    "generate_derivatives": "kie_async.artifacts",
    "get_credit_balance": "kie_async.pipeline.submit",
    "get_latest_assets": "kie_async.artifacts",
    "get_latest_successful_run": "kie_async.artifacts",
    "get_request_fixture": "kie_async.catalogue.fixtures",
    "list_recent_runs": "kie_async.artifacts",
    "load_registry": "kie_async.catalogue.specs",
    "media_needing_upload": "kie_async.catalogue.payload",
    "normalize_request": "kie_async.catalogue.normalize",
    "preload_model_data": "kie_async.catalogue.model_data",
    "prepare_request_for_submission": "kie_async.pipeline.prepare",
    "print_run_summary": "kie_async.artifacts",
    "read_index": "kie_async.artifacts",
    "rebuild_artifact_index": "kie_async.artifacts",
    "regenerate_run_derivatives": "kie_async.artifacts",
    "request_token_from_url": "kie_async.wire.callbacks",
    "resolve_prompt_context": "kie_async.catalogue.presets",
    "sign_callback": "kie_async.wire.callbacks",
    "submit_prepared_request": "kie_async.pipeline.submit",
    "verify_callback_signature": "kie_async.wire.callbacks",
    "wait_for_task": "kie_async.pipeline.submit",
    "with_hosted_media": "kie_async.catalogue.payload",
}
"""Names the top level no longer lists -> where to import them from now (they still resolve, with a warning)."""

_SESSION_METHODS: dict[str, str] = {
    "wait_for_task": "KieSession.wait_for_task",
    "get_credit_balance": "KieSession.get_credits",
    "download_output_file": "KieSession.download",
    "submit_prepared_request": "KieSession.create_task",
}
"""Free functions that repeated a session method: the method is the one way now."""


def __getattr__(name: str) -> object:
    """Import the module behind a public name the first time it is asked for, then cache the name here."""
    import importlib

    module_name = _EXPORTS.get(name)
    if module_name is not None:
        value = getattr(importlib.import_module(module_name), name)
        globals()[name] = value
        return value
    home = _MOVED.get(name)
    if home is not None:
        instead = _SESSION_METHODS.get(name)
        advice = f"use {instead} (or import it from {home})" if instead else f"import it from {home}"
        warnings.warn(f"kie_async.{name} is no longer a top-level name: {advice}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), name)
    # ``import kie_async`` then ``kie_async.artifacts.…`` worked while the package imported everything.
    if name.startswith("_"):
        raise AttributeError(f"module 'kie_async' has no attribute {name!r}")
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module 'kie_async' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "ArtifactSettings",
    "BatchProgress",
    "CallbackEvent",
    "CallbackReceiver",
    "CostEstimate",
    "CreditBudget",
    "FileOutput",
    "KieAPIStatusError",
    "KieAuthenticationError",
    "KieConfigError",
    "KieConnectionError",
    "KieDownloadError",
    "KieError",
    "KieInputError",
    "KieInsufficientCreditsError",
    "KieJournalBusyError",
    "KieRateLimitError",
    "KieRequestBlockedError",
    "KieServerError",
    "KieSession",
    "KieSettings",
    "KieSubmissionUncertainError",
    "KieTaskFailedError",
    "KieTimeoutError",
    "KieValidationError",
    "MediaInput",
    "PipelineOptions",
    "PollSettings",
    "PreflightResult",
    "PreflightThresholds",
    "RateLimitSettings",
    "RawUserRequest",
    "RetrySettings",
    "RunResult",
    "TaskHandle",
    "TaskOutcome",
    "ValidationResult",
    "__version__",
    "estimate_request_cost",
    "load_run",
    "query_runs",
    "run_many",
    "run_pipeline",
    "run_preflight",
    "update_run_notes",
    "update_run_tags",
    "validate_request",
    "verify_callback",
]
