"""The prose-limit audit (issue 22): every limit a page states in words is enforced by its spec or explained there."""

from __future__ import annotations

from pathlib import Path

import pytest

from kie_async.catalogue.prose_audit import (
    COUNTS_FILE,
    Statement,
    audit_counts,
    audit_registry,
    audit_spec,
    classify,
    main,
    matched,
    page_statements,
    render_counts,
)
from kie_async.catalogue.specs import ModelSpec, load_registry

PAGE = """# Acme

## OpenAPI Specification

```yaml
openapi: 3.0.1
info: {title: Acme, version: "1"}
paths:
  /api/v1/jobs/createTask:
    post:
      summary: Acme
      description: >-
        Inputs must be at least 300 pixels on each side.
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                model: {type: string, enum: [acme/x]}
                input:
                  type: object
                  properties:
                    prompt:
                      type: string
                      description: >-
                        The prompt. Must be between 3 and 500 characters.
                    style:
                      type: string
                      description: Cannot be used together with seed.
                    seed:
                      type: integer
                      description: A seed, for repeatable output.
```
"""

SPEC = {
    "key": "acme-x",
    "label": "Acme",
    "family": "acme",
    "output_kind": "image",
    "provenance": {"source": "test", "checked_on": "2026-12-07", "status": "unconfirmed"},
    "prompt": {"min_chars": 3, "max_chars": 500},
    "options": {"style": {"type": "string"}, "seed": {"type": "integer"}},
    "task_modes": [{"name": "text_to_image", "provider_model": "acme/x", "input_pattern": "prompt_only"}],
    "source_page": {"page": "acme.md"},
}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    (tmp_path / "acme.md").write_text(PAGE)
    return tmp_path


def test_statements_carry_field_kind_and_page_line(docs: Path) -> None:
    found = {s.field: s for s in page_statements(docs / "acme.md", "/api/v1/jobs/createTask")}
    assert set(found) == {"*", "prompt", "style"}  # the seed's description states no limit
    lines = PAGE.splitlines()
    for statement in found.values():
        assert statement.line >= 1
        page_line = lines[statement.line - 1].lower()
        assert any(word in page_line for word in ("300", "between", "cannot")), (statement, page_line)
    assert sorted(found["prompt"].numbers) == [3.0, 500.0]
    assert "exclusive" in found["style"].kinds


def test_unmapped_statements_fail_until_enforced_or_explained(docs: Path) -> None:
    spec = ModelSpec.model_validate(SPEC)
    audit = audit_spec(spec, docs)
    status = {f.statement.field: f.status for f in audit.findings}
    assert status == {"*": "unmapped", "prompt": "matched", "style": "unmapped"}
    lines = {f.statement.field: f.statement.line for f in audit.findings}
    explained = ModelSpec.model_validate(
        {
            **SPEC,
            "page_limits": [
                {
                    "line": lines["style"],
                    "field": "style",
                    "says": "not with seed",
                    "status": "not_expressible",
                    "why": "an illustration of a reason",
                },
                {
                    "line": lines["*"],
                    "field": "*",
                    "says": "300 px sides",
                    "status": "enforced",
                    "by": "prompt.max_chars",
                },
            ],
        }
    )
    audit = audit_spec(explained, docs)
    assert audit.count("unmapped") == 0 and audit.stale == []
    assert (audit.count("found"), audit.count("enforced"), audit.count("explained")) == (3, 2, 1)
    stale = ModelSpec.model_validate(
        {
            **SPEC,
            "page_limits": [
                {
                    "line": 2,
                    "field": "style",
                    "says": "nothing here",
                    "status": "not_a_limit",
                    "why": "an entry on no statement",
                },
                {"line": lines["*"], "field": "*", "says": "300 px", "status": "enforced", "by": "options.nothing"},
            ],
        }
    )
    assert len(audit_spec(stale, docs).stale) == 2


def test_a_rule_about_the_field_enforces_an_exclusion(docs: Path) -> None:
    spec = ModelSpec.model_validate(
        {
            **SPEC,
            "rules": [
                {
                    "id": "style_or_seed",
                    "when": [{"field": "style", "present": True}, {"field": "seed", "present": True}],
                    "severity": "invalid",
                    "field": "style",
                    "message": "not both",
                    "fix": "drop one",
                }
            ],
        }
    )
    status = {f.statement.field: f.status for f in audit_spec(spec, docs).findings}
    assert status["style"] == "matched"


def test_a_number_matches_only_a_limit_of_its_kind() -> None:
    spec = ModelSpec.model_validate(
        {
            **SPEC,
            "options": {**SPEC["options"], "steps": {"type": "integer", "max": 10}},
            "task_modes": [
                {
                    **SPEC["task_modes"][0],
                    "slots": [
                        {
                            "name": "image",
                            "kind": "image",
                            "roles": ["reference"],
                            "max": 4,
                            "field": "image_urls",
                            "max_mb": 10,
                        }
                    ],
                }
            ],
        }
    )

    def says(field: str, kind: str, number: float) -> Statement:
        return Statement(field=field, line=1, kinds=(kind,), text="x", numbers=(number,), by_kind=((kind, (number,)),))

    assert matched(spec, says("steps", "bound", 10))
    assert not matched(spec, says("steps", "size", 10))  # "10 MB" is not a range of 0-10
    assert matched(spec, says("image_urls", "size", 10))
    assert not matched(spec, says("image_urls", "length", 10))
    assert matched(spec, says("image_urls", "count", 4))


def test_page_limit_entries_need_a_path_or_a_reason() -> None:
    with pytest.raises(ValueError, match="'by'"):
        ModelSpec.model_validate(
            {**SPEC, "page_limits": [{"line": 1, "field": "x", "says": "abc", "status": "enforced"}]}
        )
    with pytest.raises(ValueError, match="'why'"):
        ModelSpec.model_validate(
            {**SPEC, "page_limits": [{"line": 1, "field": "x", "says": "abc", "status": "contradiction"}]}
        )


@pytest.mark.parametrize(
    ("sentence", "kind"),
    [
        ("Maximum 500 characters.", "length"),
        ("Max size: 10.0MB", "size"),
        ("Duration: 3-60 seconds.", "duration"),
        ("Width and height must be at least 300 pixels.", "pixels"),
        ("Up to 4 images.", "count"),
        ("Valid range is 10000 to 1000000.", "range"),
        ("Aspect ratio: 1:2.5 to 2.5:1.", "aspect"),
        ("Range 0-1, up to 2 decimal places.", "step"),
        ("Cannot be used together with seed.", "exclusive"),
        ("Only available when enable_sequential=false.", "conditional"),
    ],
)
def test_classify_finds_each_kind(sentence: str, kind: str) -> None:
    assert kind in classify(sentence)[0]


def test_every_committed_spec_accounts_for_every_limit_its_page_states(kie_docs: Path) -> None:
    audits = audit_registry(load_registry(), kie_docs)
    unmapped = [
        f"{f.model_key} {f.page}:{f.statement.line} [{f.statement.field}] {f.statement.text}"
        for a in audits
        for f in a.findings
        if f.status == "unmapped"
    ]
    assert not unmapped, "limits stated in words that the spec neither enforces nor explains:\n" + "\n".join(unmapped)
    stale = [f"{a.model_key}: {s}" for a in audits for s in a.stale]
    assert not stale, "\n".join(stale)
    counts = audit_counts(audits)
    assert counts["found"] == counts["enforced"] + counts["explained"] > 400
    assert COUNTS_FILE.read_text(encoding="utf-8") == render_counts(audits), (
        "the committed audit counts are stale: python -m kie_async.catalogue.prose_audit --write-counts"
    )


def test_every_spec_with_a_page_is_audited() -> None:
    for spec in load_registry().specs.values():
        if spec.key != "seedance-2.0-mini":  # no captured page of its own (see its provenance)
            assert spec.source_page is not None or spec.audit_page is not None, spec.key


def test_cli_reports_counts(kie_docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--docs", str(kie_docs), "--model", "suno-music"]) == 0
    out = capsys.readouterr()
    assert "suno-music" in out.out and "found=" in out.err and "unmapped=0" in out.err
