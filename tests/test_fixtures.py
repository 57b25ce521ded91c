"""Request fixtures: each one lands where it says, and together they cover every model in every state."""

from __future__ import annotations

import pytest

from kie_async.catalogue.fixtures import REQUEST_FIXTURES, UNREACHABLE_STATES, get_request_fixture
from kie_async.catalogue.request_models import ValidationState
from kie_async.catalogue.specs import load_registry
from kie_async.catalogue.validate import validate_request

STATES: tuple[ValidationState, ...] = ("ready", "ready_with_defaults", "ready_with_warning", "needs_input", "invalid")


@pytest.mark.parametrize("name", sorted(REQUEST_FIXTURES))
def test_fixture_lands_in_its_expected_state(name: str) -> None:
    fixture = REQUEST_FIXTURES[name]
    result = validate_request(fixture.request)
    assert result.state == fixture.expected_state, result.all_details()
    assert result.model_key == fixture.expected_model_key
    assert result.task_mode == fixture.expected_task_mode


def test_every_model_reaches_every_state() -> None:
    reached: dict[str, set[str]] = {key: set() for key in load_registry().model_keys()}
    for fixture in REQUEST_FIXTURES.values():
        reached[fixture.expected_model_key].add(fixture.expected_state)
    missing = {key: set(STATES) - states - set(UNREACHABLE_STATES.get(key, {})) for key, states in reached.items()}
    assert not {key: states for key, states in missing.items() if states}
    overclaimed = {key: set(unreachable) & reached.get(key, set()) for key, unreachable in UNREACHABLE_STATES.items()}
    assert not {key: states for key, states in overclaimed.items() if states}


def test_every_task_mode_has_a_submittable_fixture() -> None:
    covered = {
        (f.expected_model_key, f.expected_task_mode)
        for f in REQUEST_FIXTURES.values()
        if f.expected_state in ("ready", "ready_with_defaults", "ready_with_warning")
    }
    expected = {(s.key, m.name) for s in load_registry().specs.values() for m in s.task_modes}
    assert expected <= covered


def test_get_request_fixture() -> None:
    fixture = get_request_fixture("kling_3_motion_missing_video")
    assert fixture.expected_state == "needs_input"
    assert fixture.request.model_key == "kling-3.0-motion"
    with pytest.raises(KeyError, match="kling_3_motion_missing_video"):
        get_request_fixture("no_such_fixture")
