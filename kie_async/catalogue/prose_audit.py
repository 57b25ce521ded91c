"""The prose-limit audit: every limit a provider page states in words is enforced by its spec, or the spec says why not.

The importer reads a page's schema; many limits live only in its descriptions ("up to 3 images", "max 500
characters in non-custom mode", "cannot be used together with seed", "1:1 cannot be 4K"). This module reads the
request descriptions of a spec's page (the operation's own description and every input field's), finds each
sentence that states a numeric or conditional limit, and accounts for it:

* **enforced, matched**: every number the sentence states as a limit is a limit of that field in the spec (its
  range, lengths, counts, sizes, allowed values, conditional limits, or a rule about it), or, for a limit without
  a number, the spec has a rule, conditional limit or conditional default about that field;
* **listed**: the spec's ``page_limits`` names the page line and field, with ``status`` ``enforced`` and the spec
  path that checks it (``by``, which must exist), or another status and ``why`` not (the page contradicts itself,
  the format cannot say it, it is unconfirmed, or the sentence only looks like a limit);
* otherwise **unmapped**, which ``tests/test_prose_audit.py`` refuses. An entry that matches no statement is
  stale and refused too, so the list stays true.

The matching is by value, not by meaning: a person reads each statement the audit lists and decides. Run it with
``python -m kie_async.catalogue.prose_audit [--docs DIR] [--unmapped]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from kie_async.catalogue.specs import ModelRegistry, ModelSpec, PageLimit, load_registry

DOCS_ENV = "KIE_PROVIDER_DOCS"
_SKIPPED_FIELDS = frozenset({"model", "callBackUrl", "callbackUrl", "callback_url", "progressCallBackUrl"})
_FENCE = re.compile(r"^```ya?ml\s*$")
_NUM = r"(?<![\w.])\d[\d,]*(?:\.\d+)?"
_UNITS = r"(?:images?|videos?|audios?|files?|urls?|items?|shots?|elements?|references?|clips?|characters?|chars?)"

_NUMERIC: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("length", re.compile(rf"{_NUM}\s*(?:characters?|chars?|words?|tokens?)\b(?!\s*ids?\b)", re.I)),
    ("size", re.compile(rf"{_NUM}\s*(?:MB|KB|GB|M)\b", re.I)),
    ("duration", re.compile(rf"{_NUM}\s*(?:s|sec|secs|seconds?|minutes?|mins?)\b", re.I)),
    ("pixels", re.compile(rf"{_NUM}\s*(?:px|pixels?)\b|\b\d{{2,5}}\s*[x×]\s*\d{{2,5}}\b", re.I)),
    (
        "count",
        re.compile(
            rf"(?:up to|at most|maximum of|max(?:imum)?|no more than|at least|minimum of|min(?:imum)?)"
            rf"\s*:?\s*{_NUM}\s*(?:\w+\s+)?{_UNITS}|\b{_NUM}\s*(?:-|to)\s*{_NUM}\s*{_UNITS}",
            re.I,
        ),
    ),
    (
        "range",
        re.compile(
            rf"(?:between|from)\s*-?{_NUM}\s*(?:and|to|-|~)\s*-?{_NUM}|range\s*(?:is|of)?\s*:?\s*"
            rf"[\[(]?\s*-?{_NUM}\s*(?:-|to|,|~)\s*-?{_NUM}",
            re.I,
        ),
    ),
    (
        "bound",
        re.compile(
            rf"(?:max(?:imum)?|min(?:imum)?|at most|at least|up to|no more than|not exceed(?:ing)?|"
            rf"less than|greater than|longer than|shorter than|limit(?:ed)? to)\s*(?:value|length|size|"
            rf"count|number)?\s*(?:is|of)?\s*:?\s*`?-?{_NUM}",
            re.I,
        ),
    ),
    ("aspect", re.compile(r"\b\d+(?:\.\d+)?:\d+(?:\.\d+)?\s*(?:to|-|~|and)\s*\d+(?:\.\d+)?:\d+(?:\.\d+)?", re.I)),
)
_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "step",
        re.compile(
            r"\bin steps? of\b|\bincrements? of\b|\bmultiples? of\b|\bdecimal places?\b|"
            r"\bstep\s*:\s*\d",
            re.I,
        ),
    ),
    (
        "exclusive",
        re.compile(
            r"cannot be (?:used|combined)(?: together| with| simultaneously)?|mutually exclusive|"
            r"must not be used|not both\b|only one of\b|cannot be converted",
            re.I,
        ),
    ),
    (
        "conditional",
        re.compile(
            r"\bonly (?:supported|available|works?|applies|valid|effective|takes effect|when|if)\b|"
            r"\b(?:required|needed) (?:when|if)\b|\bnot supported\b|\bunsupported\b|"
            r"\b(?:is|are|will be) ignored\b|\bonly [\w.-]+(?: [\w.-]+)? supports?\b|"
            r"\bsupported only\b|\bonly in\b|\bfail to create\b",
            re.I,
        ),
    ),
)
_NUMBER = re.compile(r"(?:(?<![\w)])-)?\d[\d,]*(?:\.\d+)?")


class Statement(BaseModel):
    """One sentence of a page that states a limit."""

    model_config = ConfigDict(frozen=True)

    field: str
    line: int
    kinds: tuple[str, ...]
    text: str
    numbers: tuple[float, ...] = ()
    by_kind: tuple[tuple[str, tuple[float, ...]], ...] = ()
    """Each numeric limit kind the sentence states with the numbers its spans give (``("size", (10.0,))``)."""

    @property
    def key(self) -> tuple[str, int]:
        return self.field, self.line


class Finding(BaseModel):
    """A statement and how the spec accounts for it."""

    model_config = ConfigDict(frozen=True)

    model_key: str
    page: str
    statement: Statement
    status: str
    """``matched`` (enforced, found by value), ``enforced`` (listed with a spec path), another ``page_limits``
    status (explained), or ``unmapped``."""
    detail: str = ""

    @property
    def enforced(self) -> bool:
        return self.status in ("matched", "enforced")

    @property
    def explained(self) -> bool:
        return not self.enforced and self.status != "unmapped"


class SpecAudit(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_key: str
    page: str | None
    findings: list[Finding]
    stale: list[str]
    """``page_limits`` entries that match no statement, or whose ``by`` path does not exist."""

    def count(self, what: str) -> int:
        if what == "found":
            return len(self.findings)
        if what == "enforced":
            return sum(f.enforced for f in self.findings)
        if what == "explained":
            return sum(f.explained for f in self.findings)
        return sum(f.status == "unmapped" for f in self.findings)


# ---------------------------------------------------------------- reading a page's descriptions


def _openapi_block(lines: Sequence[str]) -> tuple[int, str] | None:
    """(0-based index of the block's first line, block text) of the page's OpenAPI yaml block."""
    start: int | None = None
    for index, line in enumerate(lines):
        if start is None and _FENCE.match(line.strip()):
            start = index + 1
        elif start is not None and line.strip() == "```" and not line.startswith(" "):
            block = "\n".join(lines[start:index])
            if block.lstrip().startswith("openapi"):
                return start, block
            start = None
    return None


def _resolve(doc: Any, node: Any, depth: int = 0) -> Any:
    while isinstance(node, dict) and "$ref" in node and depth < 20:
        target: Any = doc
        for part in str(node["$ref"]).lstrip("#/").split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        node, depth = target, depth + 1
    return node


def _described(doc: Any, schema: Any, prefix: str, top: bool, depth: int = 0) -> Iterator[tuple[str, Any, Any]]:
    """(field path, the mapping holding its description, the description) for every property below ``schema``."""
    schema = _resolve(doc, schema)
    if not isinstance(schema, dict) or depth > 8:
        return
    for part in schema.get("allOf") or []:
        yield from _described(doc, part, prefix, top, depth + 1)
    props = schema.get("properties")
    if not isinstance(props, dict):
        return
    for raw_name, raw_prop in props.items():
        name = str(raw_name).strip()
        prop = _resolve(doc, raw_prop)
        if not isinstance(prop, dict) or (top and name in _SKIPPED_FIELDS):
            continue
        if top and name == "input":  # the market createTask wrapper: its properties are the fields
            yield from _described(doc, prop, "", False, depth + 1)
            continue
        path = f"{prefix}{name}"
        if isinstance(prop.get("description"), str):
            yield path, prop, prop["description"]
        yield from _described(doc, prop, f"{path}.", False, depth + 1)
        items = _resolve(doc, prop.get("items"))
        if isinstance(items, dict):
            yield from _described(doc, items, f"{path}.", False, depth + 1)


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?;。])\s+(?=[A-Z*`\"(\d-])|\n\s*\n|\n\s*[-*•]\s+|\n(?=\s*\*\*)", text)
    return [" ".join(p.split()) for p in parts if p and p.strip()]


def _numbers(spans: Sequence[str], kinds: Sequence[str]) -> tuple[float, ...]:
    out: list[float] = []
    for span in spans:
        cleaned = span if "aspect" in kinds else re.sub(r"\b\d+:\d+\b", " ", span)
        for raw in _NUMBER.findall(cleaned):
            value = float(raw.replace(",", ""))
            if value not in out:
                out.append(value)
    return tuple(out)


def classify(sentence: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The kinds of limit ``sentence`` states and the text spans that state them."""
    kinds: list[str] = []
    spans: list[str] = []
    for kind, pattern in _NUMERIC:
        found = [m.group(0) for m in pattern.finditer(sentence)]
        if found:
            kinds.append(kind)
            spans.extend(found)
    for kind, pattern in _WORDS:
        match = pattern.search(sentence)
        if match:
            kinds.append(kind)
            spans.append(match.group(0))
    return tuple(kinds), tuple(spans)


def _line_of(lines: Sequence[str], start: int, spans: Sequence[str], sentence: str) -> int:
    """The 1-based page line (from ``start``, 0-based) where the sentence's first limit span begins."""
    needles = [re.escape(w) for w in re.findall(r"[\w.]+", spans[0])[:1]] if spans else []
    needles += [re.escape(w) for w in re.findall(r"\w{4,}", sentence)[:1]]
    for needle in needles:
        pattern = re.compile(rf"(?<![\w.]){needle}", re.I)
        for index in range(start, min(len(lines), start + 400)):
            if pattern.search(lines[index]):
                return index + 1
    return start + 1


def page_statements(page_file: Path, operation: str) -> list[Statement]:
    """Every sentence of the operation's and its request fields' descriptions that states a limit."""
    from ruamel.yaml import YAML

    lines = page_file.read_text(encoding="utf-8").splitlines()
    found = _openapi_block(lines)
    if found is None:
        return []
    offset, block = found
    doc = YAML(typ="rt", pure=True).load(block)
    op = ((doc.get("paths") or {}).get(operation) or {}).get("post") or {}
    out: list[Statement] = []
    described: list[tuple[str, Any, Any]] = []
    if isinstance(op.get("description"), str):
        described.append(("*", op, op["description"]))
    body = _resolve(
        doc, (((op.get("requestBody") or {}).get("content") or {}).get("application/json") or {}).get("schema")
    )
    described.extend(_described(doc, body, "", True))
    for field, holder, text in described:
        try:
            start = offset + holder.lc.key("description")[0]
        except (AttributeError, KeyError, TypeError):
            start = offset
        cursor = start
        for sentence in _sentences(str(text)):
            kinds, spans = classify(sentence)
            if not kinds:
                continue
            line = _line_of(lines, cursor, spans, sentence)
            cursor = max(cursor, line - 1)
            by_kind = tuple(
                (kind, nums)
                for kind, pattern in _NUMERIC
                if (nums := _numbers([m.group(0) for m in pattern.finditer(sentence)], (kind,)))
            )
            numbers = tuple(dict.fromkeys(n for _, nums in by_kind for n in nums))  # words' numbers: not limits
            out.append(
                Statement(field=field, line=line, kinds=kinds, text=sentence[:240], numbers=numbers, by_kind=by_kind)
            )
    return out


# ---------------------------------------------------------------- what the spec enforces


def _collect_numbers(value: Any, out: set[float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        out.add(float(value))
    elif isinstance(value, str):
        for raw in re.findall(r"^\d+(?:\.\d+)?(?=[sKk]?$)", value.strip()):
            out.add(float(raw))
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in ("provenance", "description", "verification_note", "reason", "message", "fix", "why"):
                _collect_numbers(item, out)
    elif isinstance(value, list):
        for item in value:
            _collect_numbers(item, out)


def _rules_about(spec: ModelSpec, field: str) -> list[Any]:
    slots = {s.name for m in spec.task_modes for s in m.slots if s.field == field}
    return [
        r
        for r in spec.rules
        if r.field == field
        or field in r.drop
        or any(c.field == field or c.slot_filled in slots or c.slot_empty in slots for c in r.when)
    ]


_POOL_KEYS: dict[str, tuple[str, ...]] = {
    "length": ("min_chars", "max_chars", "max_total_chars"),
    "size": ("max_mb", "max_total_mb"),
    "pixels": ("pixels",),
}
"""Which spec keys hold a limit of each kind; the other kinds (counts, durations, ranges) match any limit of the
field, as a count or a length in seconds may be an option's range or a slot's count."""


def _pool(node: Any, keys: tuple[str, ...], out: set[float]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys:
                _collect_numbers(value, out)
            elif key not in ("provenance", "description", "reason", "message", "fix", "why"):
                _pool(value, keys, out)
    elif isinstance(node, list):
        for item in node:
            _pool(item, keys, out)


def _field_nodes(spec: ModelSpec, field: str) -> list[Any]:
    root = field.split(".")[0]
    if field == "*":
        return [
            spec.model_dump(
                exclude={"page_limits", "verification_notes", "overrides", "example_corrections", "transport"}
            )
        ]
    nodes: list[Any] = []
    if root == spec.prompt.field:
        nodes.append(spec.prompt.model_dump())
    if root in spec.options:
        nodes.append(spec.options[root].model_dump())
    nodes += [s.model_dump() for m in spec.task_modes for s in m.slots if s.field == root]
    return nodes


def kind_limits(spec: ModelSpec, field: str, kind: str) -> set[float] | None:
    """The numbers the spec uses as limits of ``kind`` for ``field``; ``None``: any limit of the field counts."""
    keys = _POOL_KEYS.get(kind)
    if keys is None:
        return None
    out: set[float] = set()
    for node in _field_nodes(spec, field):
        _pool(node, keys, out)
    return out


def field_limits(spec: ModelSpec, field: str) -> tuple[set[float], bool]:
    """(the numbers the spec uses as limits of ``field``, whether it holds a condition about it)."""
    numbers: set[float] = set()
    conditional = False
    root = field.split(".")[0]
    if field == "*":
        _collect_numbers(
            spec.model_dump(
                exclude={"page_limits", "verification_notes", "overrides", "example_corrections", "transport"}
            ),
            numbers,
        )
        return numbers, bool(spec.rules or len(spec.task_modes) > 1)
    if root == spec.prompt.field:
        _collect_numbers(spec.prompt.model_dump(), numbers)
        conditional = bool(spec.prompt.limits_when or spec.prompt.required_unless)
    opt = spec.options.get(root)
    if opt is not None:
        _collect_numbers(opt.model_dump(), numbers)
        conditional = conditional or bool(opt.limits_when or opt.default_when)
    for mode in spec.task_modes:
        slots = [s for s in mode.slots if s.field == root]
        for slot in slots:
            _collect_numbers(slot.model_dump(exclude={"name", "field", "kind", "roles", "formats"}), numbers)
            conditional = conditional or bool(slot.limits_when)
        if slots:
            for value in (mode.max_total_media, mode.min_total_media, *mode.max_total_seconds.values()):
                if value:
                    numbers.add(float(value))
            for total in mode.slot_totals:
                if any(s.name in total.slots for s in slots):
                    numbers.update(float(v) for v in (total.min, total.max) if v is not None)
                    conditional = True
    for rule in _rules_about(spec, root):
        conditional = True
        for cond in rule.when:
            _collect_numbers(cond.model_dump(exclude={"field", "task_mode", "slot_filled", "slot_empty"}), numbers)
    for limit in spec.prompt.limits_when if root == spec.prompt.field else []:
        conditional = True
        _collect_numbers(limit.model_dump(exclude={"when", "reason"}), numbers)
    return numbers, conditional


def _alternatives(value: float, kinds: Sequence[str]) -> set[float]:
    out = {value}
    if "size" in kinds:  # 500KB may be written 0.5 MB
        out |= {value / 1000, value / 1024, value * 1024, value * 1000}
    return out


_STEP = re.compile(r"\bstep\s*:\s*(\d+(?:\.\d+)?)", re.I)


def _step_enforced(spec: ModelSpec, statement: Statement) -> bool:
    """A stated step (``Step: 0.01``) holds when the field is whole numbers (step 1), a multiple of it, or has at
    most as many decimals; a step in words ("up to 2 decimal places") needs ``decimals``/``multiple_of``."""
    opt = spec.options.get(statement.field.split(".")[0])
    if opt is None:
        return False
    if opt.allowed is not None:
        return True
    steps = {float(v) for v in _STEP.findall(statement.text)}
    if not steps:
        return opt.multiple_of is not None or opt.decimals is not None
    for step in steps:
        whole = step.is_integer() and opt.type == "integer"
        multiple = opt.multiple_of is not None and abs(opt.multiple_of - step) < 1e-12
        places = opt.decimals is not None and abs(10.0**-opt.decimals - step) < 1e-12
        if not (whole or multiple or places):
            return False
    return True


def matched(spec: ModelSpec, statement: Statement) -> bool:
    """Does the spec enforce this statement by value (numbers) or by holding a condition about its field?"""
    numbers, conditional = field_limits(spec, statement.field)
    word_only = not statement.numbers
    if any(k in ("exclusive", "conditional") for k in statement.kinds) and not conditional:
        return False
    if "step" in statement.kinds and not _step_enforced(spec, statement):
        return False
    if word_only:
        return any(k in ("exclusive", "conditional", "step") for k in statement.kinds)
    for kind, kind_numbers in statement.by_kind:
        pool = kind_limits(spec, statement.field, kind)
        if pool is not None and not all(_alternatives(n, (kind,)) & pool for n in kind_numbers):
            return False
    return all(_alternatives(n, statement.kinds) & numbers for n in statement.numbers)


def _path_exists(spec: ModelSpec, path: str) -> bool:
    node: Any = spec.model_dump(by_alias=False)
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, list):  # a task mode, slot or rule by its name or id
            node = next((n for n in node if isinstance(n, dict) and part in (n.get("name"), n.get("id"))), None)
            if node is None:
                return False
        else:
            return False
    return node is not None and node != [] and node != {}


def audit_page_of(spec: ModelSpec) -> tuple[str, str] | None:
    """(page below the docs root, operation path) the audit reads for ``spec``."""
    page = spec.audit_page or spec.source_page
    return (page.page, page.operation) if page is not None else None


def audit_spec(spec: ModelSpec, docs_root: Path) -> SpecAudit:
    """Account for every limit statement of ``spec``'s page."""
    where = audit_page_of(spec)
    if where is None:
        return SpecAudit(model_key=spec.key, page=None, findings=[], stale=[])
    page, operation = where
    statements = page_statements(docs_root / page, operation)
    listed: dict[tuple[str, int], PageLimit] = {(e.field, e.line): e for e in spec.page_limits}
    used: set[tuple[str, int]] = set()
    findings: list[Finding] = []
    for statement in statements:
        entry = listed.get(statement.key)
        if entry is not None:
            used.add(statement.key)
            findings.append(
                Finding(
                    model_key=spec.key,
                    page=page,
                    statement=statement,
                    status=entry.status,
                    detail=entry.by or entry.why or "",
                )
            )
        elif matched(spec, statement):
            findings.append(Finding(model_key=spec.key, page=page, statement=statement, status="matched"))
        else:
            findings.append(Finding(model_key=spec.key, page=page, statement=statement, status="unmapped"))
    stale = [
        f"{e.field}@{e.line}: matches no limit statement of {page}"
        for e in spec.page_limits
        if (e.field, e.line) not in used
    ]
    stale += [
        f"{e.field}@{e.line}: 'by' path {e.by!r} is not in the spec"
        for e in spec.page_limits
        if e.by is not None and not _path_exists(spec, e.by)
    ]
    return SpecAudit(model_key=spec.key, page=page, findings=findings, stale=stale)


def audit_registry(registry: ModelRegistry, docs_root: Path) -> list[SpecAudit]:
    return [audit_spec(spec, docs_root) for spec in registry.specs.values()]


def audit_counts(audits: Sequence[SpecAudit]) -> dict[str, int]:
    return {what: sum(a.count(what) for a in audits) for what in ("found", "enforced", "explained", "unmapped")}


COUNTS_FILE = Path(__file__).with_name("prose_audit_counts.json")
"""The audit's counts per model key, committed so the catalogue page shows them without the captured pages."""


def counts_document(audits: Sequence[SpecAudit]) -> dict[str, Any]:
    """What :data:`COUNTS_FILE` holds: totals and, per audited model key, found / enforced / explained."""
    per_model = {
        a.model_key: {what: a.count(what) for what in ("found", "enforced", "explained")}
        for a in sorted(audits, key=lambda a: a.model_key)
        if a.page is not None
    }
    return {"totals": audit_counts(audits), "models": per_model}


def render_counts(audits: Sequence[SpecAudit]) -> str:
    return json.dumps(counts_document(audits), indent=1, sort_keys=True) + "\n"


def committed_counts() -> dict[str, dict[str, int]]:
    """Per model key, the committed audit counts (empty when the file is missing)."""
    try:
        data = json.loads(COUNTS_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    return models if isinstance(models, dict) else {}


def docs_root_from_env() -> Path | None:
    explicit = os.environ.get(DOCS_ENV)
    return Path(explicit) if explicit and (Path(explicit) / "manifest.json").is_file() else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kie_async.catalogue.prose_audit",
        description="Every limit a provider page states in words: enforced or explained",
    )
    parser.add_argument("--docs", type=Path, default=None, help=f"the captured docs pages (default: ${DOCS_ENV})")
    parser.add_argument("--specs", type=Path, default=None, help="a model spec folder (default: the bundled one)")
    parser.add_argument("--model", action="append", default=[], help="only these model keys")
    parser.add_argument("--unmapped", action="store_true", help="list only unmapped statements and stale entries")
    parser.add_argument("--json", action="store_true", help="one JSON object per finding")
    parser.add_argument(
        "--write-counts",
        action="store_true",
        help=f"rewrite {COUNTS_FILE.name} (the per-model counts the catalogue page shows)",
    )
    args = parser.parse_args(argv)
    docs = args.docs or docs_root_from_env()
    if docs is None:
        print(f"no docs folder: pass --docs or set {DOCS_ENV}", file=sys.stderr)
        return 2
    registry = load_registry(args.specs) if args.specs else load_registry()
    audits = [audit_spec(s, docs) for s in registry.specs.values() if not args.model or s.key in args.model]
    for audit in audits:
        for finding in audit.findings:
            if args.unmapped and finding.status != "unmapped":
                continue
            st = finding.statement
            if args.json:
                print(
                    json.dumps(
                        {
                            "model": audit.model_key,
                            "page": audit.page,
                            "line": st.line,
                            "field": st.field,
                            "kinds": list(st.kinds),
                            "numbers": list(st.numbers),
                            "status": finding.status,
                            "text": st.text,
                        }
                    )
                )
            else:
                print(f"{audit.model_key}\t{audit.page}:{st.line}\t{st.field}\t{finding.status}\t{st.text}")
        for problem in audit.stale:
            print(f"{audit.model_key}\tSTALE\t{problem}")
    counts = audit_counts(audits)
    if args.write_counts and not args.model:
        COUNTS_FILE.write_text(render_counts(audits), encoding="utf-8")
    print(" ".join(f"{k}={v}" for k, v in counts.items()), file=sys.stderr)
    return 1 if counts["unmapped"] or any(a.stale for a in audits) else 0


if __name__ == "__main__":
    raise SystemExit(main())
