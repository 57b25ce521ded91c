"""``kie-async validate | estimate``: check and price a request offline, before anything is bought."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from kie_async.catalogue.preflight import run_preflight
from kie_async.catalogue.request_models import ValidationResult
from kie_async.catalogue.validate import validate_request
from kie_async.interfaces.cli._common import credits_arg
from kie_async.interfaces.cli._output import Printer, out
from kie_async.interfaces.cli._request_args import build_request, request_args


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add this group's subcommands to the parser."""
    validate = sub.add_parser(
        "validate",
        help="check a request without spending credits",
        description="Normalize and validate a request; exit 0 if it can be submitted.",
    )
    request_args(validate)
    validate.set_defaults(handler=validate_command)

    estimate = sub.add_parser(
        "estimate",
        help="estimate a request's cost and gate it on balance/budget",
        description="Price a request from the latest pricing snapshot; exit 0 if allowed.",
    )
    request_args(estimate)
    estimate.add_argument("--credits", type=credits_arg, default=None, help="available credits to check against")
    estimate.add_argument("--budget", type=credits_arg, default=None, help="refuse if the estimate exceeds this")
    estimate.add_argument("--allow-unknown-cost", action="store_true", help="do not block when no price is known")
    estimate.set_defaults(handler=estimate_command)


def _print_validation(printer: Printer, result: ValidationResult) -> None:
    colour = {
        "ready": "green",
        "ready_with_defaults": "green",
        "ready_with_warning": "yellow",
        "needs_input": "yellow",
        "invalid": "red",
    }[result.state]
    printer.line(
        (result.state, f"bold {colour}"),
        f" {result.model_key} ({result.task_mode or '?'} -> {result.provider_model or '?'})",
    )
    groups = (
        ("impossible", result.impossible_inputs, "red"),
        ("missing", result.missing_inputs, "yellow"),
        ("warning", result.warning_details, "yellow"),
        ("default", result.defaulted_fields, "dim"),
    )
    for label, details, style in groups:
        for d in details:
            printer.line("  ", (f"{label:<10}", style), f" {d.field}: {d.message} — fix: {d.fix}")


def validate_command(args: argparse.Namespace) -> int:
    request = build_request(args)
    result = validate_request(request, check_files=not args.no_file_check)
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        _print_validation(out, result)
    return 0 if result.is_submittable else 1


def estimate_command(args: argparse.Namespace) -> int:
    request = build_request(args)
    result = asyncio.run(
        run_preflight(
            request,
            available_credits=args.credits,
            budget_credits=args.budget,
            allow_unknown_cost=args.allow_unknown_cost,
            check_files=not args.no_file_check,
        )
    )
    if args.json:
        print(result.model_dump_json(indent=2, exclude={"validation": {"normalized"}}))
        return 0 if result.allowed else 1
    _print_validation(out, result.validation)
    est = result.estimate
    if est.has_numeric_estimate:
        out.line(
            ("estimate", "bold"),
            f" {est.credits:g} credits (${est.usd:.4f}) = {est.rate_credits:g} cr "
            f"{est.unit} x {est.quantity:g}; snapshot {est.snapshot_id}; "
            f"{'verified' if est.is_known else 'planning figure, not verified billing'}",
        )
    else:
        out.line(("estimate", "bold"), f" unknown ({'; '.join(est.notes) or 'no price'})")
    for note in est.assumptions:
        out.line("  ", ("assumption", "yellow"), f" {note}")
    for reason in result.reasons:
        style = "red" if reason.blocking else "dim"
        out.line("  ", (reason.code, style), f" {reason.message}")
    if result.allowed:
        out.line(("allowed", "bold green"), " (with a cost warning)" if result.decision == "warn" else "")
    elif result.decision == "require_confirmation":
        out.line(("needs confirmation", "bold yellow"), " (`kie-async run` asks on a terminal, or takes --yes)")
    else:
        out.line(("blocked", "bold red"))
    return 0 if result.allowed else 1
