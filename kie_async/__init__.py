"""kie-async: an asyncio-native client SDK for Kie.ai.

Everything a user needs is importable from here; modules not re-exported are private by convention.

Names load on first use (module ``__getattr__``): ``import kie_async`` costs about what its dependencies do,
and a CLI call or a script that needs only the session does not build the artifact, journal, callback-server
or pricing models. ``from kie_async import X`` works for every name in ``__all__``; type checkers read the
imports under ``TYPE_CHECKING``, which ``tests/test_packaging.py`` keeps in step with ``_EXPORTS``.
"""

from typing import TYPE_CHECKING

from kie_async._version import __version__

if TYPE_CHECKING:
    from kie_async.api_models import (
        CallbackEvent,
        CreateTaskPayload,
        CreditBalance,
        DownloadResult,
        TaskCreated,
        TaskRecord,
        TaskResult,
        TaskState,
        UploadedFile,
    )
    from kie_async.artifacts import (
        ArtifactDerivativeSettings,
        ArtifactKind,
        ArtifactSettings,
        ArtifactSource,
        AssetRef,
        IndexEntry,
        KieArtifactError,
        PromptRecord,
        ProviderTrace,
        RunArtifact,
        RunArtifactCreateRequest,
        RunManifest,
        RunStatus,
        create_run_artifact,
        generate_derivatives,
        get_latest_assets,
        get_latest_successful_run,
        list_recent_runs,
        load_run,
        print_run_summary,
        query_runs,
        read_index,
        rebuild_artifact_index,
        regenerate_run_derivatives,
    )
    from kie_async.budget import CreditBudget
    from kie_async.callback_receiver import CallbackReceiver, add_callback_route
    from kie_async.callbacks import (
        KIE_REQUEST_PARAM,
        CallbackReplayGuard,
        request_token_from_url,
        sign_callback,
        verify_callback,
        verify_callback_signature,
    )
    from kie_async.errors import (
        KieAPIStatusError,
        KieAuthenticationError,
        KieBadRequestError,
        KieCallbackBodyError,
        KieCallbackVerificationError,
        KieConfigError,
        KieConnectionError,
        KieDownloadContentError,
        KieDownloadError,
        KieDownloadURLError,
        KieError,
        KieInputError,
        KieInsufficientCreditsError,
        KieJournalBusyError,
        KieNotFoundError,
        KieRateLimitError,
        KieResponseShapeError,
        KieServerError,
        KieSubmissionUncertainError,
        KieTaskFailedError,
        KieTimeoutError,
        KieUsageLimitError,
        KieValidationError,
    )
    from kie_async.fanout import BatchProgress, run_many
    from kie_async.fixtures import REQUEST_FIXTURES, get_request_fixture
    from kie_async.model_data import preload_model_data
    from kie_async.normalize import normalize_request
    from kie_async.payload import (
        MediaNotUploadedError,
        RequestNotReadyError,
        build_submission_payload,
        check_wire_payload,
        media_needing_upload,
        with_hosted_media,
    )
    from kie_async.pipeline import PipelineHooks, PipelineOptions, RunOutput, RunResult, StageOutcome, run_pipeline
    from kie_async.polling import TaskProgress
    from kie_async.preflight import CreditSource, PreflightResult, run_preflight
    from kie_async.prepare import PreparedRequest, prepare_request_for_submission
    from kie_async.presets import (
        PromptContext,
        PromptEnhancementPreview,
        apply_enhanced_prompt,
        dry_run_prompt_enhancement,
        resolve_prompt_context,
    )
    from kie_async.pricing import CostEstimate, estimate_request_cost, estimate_wire_cost
    from kie_async.request_models import MediaInput, NormalizedRequest, RawUserRequest, ValidationResult
    from kie_async.request_state import RequestState
    from kie_async.retry import RetryPolicy
    from kie_async.session import KieSession, SessionStats
    from kie_async.settings import KieSettings, PollSettings, RateLimitSettings, RetrySettings
    from kie_async.specs import aload_registry, load_registry
    from kie_async.submit import download_output_file, get_credit_balance, submit_prepared_request, wait_for_task
    from kie_async.validate import validate_request

_EXPORTS: dict[str, str] = {
    "CallbackEvent": "kie_async.api_models",
    "CreateTaskPayload": "kie_async.api_models",
    "CreditBalance": "kie_async.api_models",
    "DownloadResult": "kie_async.api_models",
    "TaskCreated": "kie_async.api_models",
    "TaskRecord": "kie_async.api_models",
    "TaskResult": "kie_async.api_models",
    "TaskState": "kie_async.api_models",
    "UploadedFile": "kie_async.api_models",
    "ArtifactDerivativeSettings": "kie_async.artifacts",
    "ArtifactKind": "kie_async.artifacts",
    "ArtifactSettings": "kie_async.artifacts",
    "ArtifactSource": "kie_async.artifacts",
    "AssetRef": "kie_async.artifacts",
    "IndexEntry": "kie_async.artifacts",
    "KieArtifactError": "kie_async.artifacts",
    "PromptRecord": "kie_async.artifacts",
    "ProviderTrace": "kie_async.artifacts",
    "RunArtifact": "kie_async.artifacts",
    "RunArtifactCreateRequest": "kie_async.artifacts",
    "RunManifest": "kie_async.artifacts",
    "RunStatus": "kie_async.artifacts",
    "create_run_artifact": "kie_async.artifacts",
    "generate_derivatives": "kie_async.artifacts",
    "get_latest_assets": "kie_async.artifacts",
    "get_latest_successful_run": "kie_async.artifacts",
    "list_recent_runs": "kie_async.artifacts",
    "load_run": "kie_async.artifacts",
    "print_run_summary": "kie_async.artifacts",
    "query_runs": "kie_async.artifacts",
    "read_index": "kie_async.artifacts",
    "rebuild_artifact_index": "kie_async.artifacts",
    "regenerate_run_derivatives": "kie_async.artifacts",
    "CreditBudget": "kie_async.budget",
    "CallbackReceiver": "kie_async.callback_receiver",
    "add_callback_route": "kie_async.callback_receiver",
    "KIE_REQUEST_PARAM": "kie_async.callbacks",
    "CallbackReplayGuard": "kie_async.callbacks",
    "request_token_from_url": "kie_async.callbacks",
    "sign_callback": "kie_async.callbacks",
    "verify_callback": "kie_async.callbacks",
    "verify_callback_signature": "kie_async.callbacks",
    "KieAPIStatusError": "kie_async.errors",
    "KieAuthenticationError": "kie_async.errors",
    "KieBadRequestError": "kie_async.errors",
    "KieCallbackBodyError": "kie_async.errors",
    "KieCallbackVerificationError": "kie_async.errors",
    "KieConfigError": "kie_async.errors",
    "KieConnectionError": "kie_async.errors",
    "KieDownloadContentError": "kie_async.errors",
    "KieDownloadError": "kie_async.errors",
    "KieDownloadURLError": "kie_async.errors",
    "KieError": "kie_async.errors",
    "KieInputError": "kie_async.errors",
    "KieInsufficientCreditsError": "kie_async.errors",
    "KieJournalBusyError": "kie_async.errors",
    "KieNotFoundError": "kie_async.errors",
    "KieRateLimitError": "kie_async.errors",
    "KieResponseShapeError": "kie_async.errors",
    "KieServerError": "kie_async.errors",
    "KieSubmissionUncertainError": "kie_async.errors",
    "KieTaskFailedError": "kie_async.errors",
    "KieTimeoutError": "kie_async.errors",
    "KieUsageLimitError": "kie_async.errors",
    "KieValidationError": "kie_async.errors",
    "BatchProgress": "kie_async.fanout",
    "run_many": "kie_async.fanout",
    "REQUEST_FIXTURES": "kie_async.fixtures",
    "get_request_fixture": "kie_async.fixtures",
    "preload_model_data": "kie_async.model_data",
    "normalize_request": "kie_async.normalize",
    "MediaNotUploadedError": "kie_async.payload",
    "RequestNotReadyError": "kie_async.payload",
    "build_submission_payload": "kie_async.payload",
    "check_wire_payload": "kie_async.payload",
    "media_needing_upload": "kie_async.payload",
    "with_hosted_media": "kie_async.payload",
    "PipelineHooks": "kie_async.pipeline",
    "PipelineOptions": "kie_async.pipeline",
    "RunOutput": "kie_async.pipeline",
    "RunResult": "kie_async.pipeline",
    "StageOutcome": "kie_async.pipeline",
    "run_pipeline": "kie_async.pipeline",
    "TaskProgress": "kie_async.polling",
    "CreditSource": "kie_async.preflight",
    "PreflightResult": "kie_async.preflight",
    "run_preflight": "kie_async.preflight",
    "PreparedRequest": "kie_async.prepare",
    "prepare_request_for_submission": "kie_async.prepare",
    "PromptContext": "kie_async.presets",
    "PromptEnhancementPreview": "kie_async.presets",
    "apply_enhanced_prompt": "kie_async.presets",
    "dry_run_prompt_enhancement": "kie_async.presets",
    "resolve_prompt_context": "kie_async.presets",
    "CostEstimate": "kie_async.pricing",
    "estimate_request_cost": "kie_async.pricing",
    "estimate_wire_cost": "kie_async.pricing",
    "MediaInput": "kie_async.request_models",
    "NormalizedRequest": "kie_async.request_models",
    "RawUserRequest": "kie_async.request_models",
    "ValidationResult": "kie_async.request_models",
    "RequestState": "kie_async.request_state",
    "RetryPolicy": "kie_async.retry",
    "KieSession": "kie_async.session",
    "SessionStats": "kie_async.session",
    "KieSettings": "kie_async.settings",
    "PollSettings": "kie_async.settings",
    "RateLimitSettings": "kie_async.settings",
    "RetrySettings": "kie_async.settings",
    "aload_registry": "kie_async.specs",
    "load_registry": "kie_async.specs",
    "download_output_file": "kie_async.submit",
    "get_credit_balance": "kie_async.submit",
    "submit_prepared_request": "kie_async.submit",
    "wait_for_task": "kie_async.submit",
    "validate_request": "kie_async.validate",
    "KieEmulator": "kie_async.emulator",
    "EmulatorConfig": "kie_async.emulator",
}
"""Public name -> the module defining it (the emulator is reachable but not in ``__all__``)."""


def __getattr__(name: str) -> object:
    """Import the module behind a public name the first time it is asked for, then cache the name here."""
    import importlib

    module_name = _EXPORTS.get(name)
    if module_name is None:
        # ``import kie_async`` then ``kie_async.artifacts.…`` worked while the package imported everything.
        if name.startswith("_"):
            raise AttributeError(f"module 'kie_async' has no attribute {name!r}")
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'kie_async' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "KIE_REQUEST_PARAM",
    "REQUEST_FIXTURES",
    "ArtifactDerivativeSettings",
    "ArtifactKind",
    "ArtifactSettings",
    "ArtifactSource",
    "AssetRef",
    "BatchProgress",
    "CallbackEvent",
    "CallbackReceiver",
    "CallbackReplayGuard",
    "CostEstimate",
    "CreateTaskPayload",
    "CreditBalance",
    "CreditBudget",
    "CreditSource",
    "DownloadResult",
    "IndexEntry",
    "KieAPIStatusError",
    "KieArtifactError",
    "KieAuthenticationError",
    "KieBadRequestError",
    "KieCallbackBodyError",
    "KieCallbackVerificationError",
    "KieConfigError",
    "KieConnectionError",
    "KieDownloadContentError",
    "KieDownloadError",
    "KieDownloadURLError",
    "KieError",
    "KieInputError",
    "KieInsufficientCreditsError",
    "KieJournalBusyError",
    "KieNotFoundError",
    "KieRateLimitError",
    "KieResponseShapeError",
    "KieServerError",
    "KieSession",
    "KieSettings",
    "KieSubmissionUncertainError",
    "KieTaskFailedError",
    "KieTimeoutError",
    "KieUsageLimitError",
    "KieValidationError",
    "MediaInput",
    "MediaNotUploadedError",
    "NormalizedRequest",
    "PipelineHooks",
    "PipelineOptions",
    "PollSettings",
    "PreflightResult",
    "PreparedRequest",
    "PromptContext",
    "PromptEnhancementPreview",
    "PromptRecord",
    "ProviderTrace",
    "RateLimitSettings",
    "RawUserRequest",
    "RequestNotReadyError",
    "RequestState",
    "RetryPolicy",
    "RetrySettings",
    "RunArtifact",
    "RunArtifactCreateRequest",
    "RunManifest",
    "RunOutput",
    "RunResult",
    "RunStatus",
    "SessionStats",
    "StageOutcome",
    "TaskCreated",
    "TaskProgress",
    "TaskRecord",
    "TaskResult",
    "TaskState",
    "UploadedFile",
    "ValidationResult",
    "__version__",
    "add_callback_route",
    "aload_registry",
    "apply_enhanced_prompt",
    "build_submission_payload",
    "check_wire_payload",
    "create_run_artifact",
    "download_output_file",
    "dry_run_prompt_enhancement",
    "estimate_request_cost",
    "estimate_wire_cost",
    "generate_derivatives",
    "get_credit_balance",
    "get_latest_assets",
    "get_latest_successful_run",
    "get_request_fixture",
    "list_recent_runs",
    "load_registry",
    "load_run",
    "media_needing_upload",
    "normalize_request",
    "preload_model_data",
    "prepare_request_for_submission",
    "print_run_summary",
    "query_runs",
    "read_index",
    "rebuild_artifact_index",
    "regenerate_run_derivatives",
    "request_token_from_url",
    "resolve_prompt_context",
    "run_many",
    "run_pipeline",
    "run_preflight",
    "sign_callback",
    "submit_prepared_request",
    "validate_request",
    "verify_callback",
    "verify_callback_signature",
    "wait_for_task",
    "with_hosted_media",
]
