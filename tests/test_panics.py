"""No engine panic reaches Python as pyo3's PanicException (a BaseException that
`except Exception` misses): each becomes a RuntimeError naming the engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ferrax import _core

BINDINGS = Path(__file__).resolve().parents[1] / "rust" / "python" / "src"


@pytest.mark.parametrize("place", ["binding", "engine"])
def test_a_panic_is_a_runtime_error(place):
    with pytest.raises(RuntimeError, match="internal error in the ferrax engine: deliberate"):
        _core.panic_for_test(place)


def test_a_panic_is_caught_by_except_exception():
    try:
        _core.panic_for_test("binding")
    except Exception as e:  # noqa: BLE001 - the point of the test
        assert type(e) is RuntimeError
    else:
        pytest.fail("no exception")


def _matching_brace(text: str, i: int) -> int:
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise AssertionError("unbalanced braces")


def _body_start(text: str, fn_at: int) -> int:
    """Index just past the `{` opening the body of the fn at `fn_at`."""
    parens = 0
    for j in range(fn_at, len(text)):
        if text[j] == "(":
            parens += 1
        elif text[j] == ")":
            parens -= 1
        elif text[j] == "{" and parens == 0:
            return j + 1
    raise AssertionError("no body")


def entry_points(text: str) -> list[tuple[str, str]]:
    """(name, body) of each #[pyfunction] and each fn of a #[pymethods] block."""
    found = []
    starts = [text.index("fn ", m.end()) for m in re.finditer(r"#\[pyfunction\]", text)]
    for m in re.finditer(r"#\[pymethods\]\s*impl[^{]*\{", text):
        end = _matching_brace(text, m.end() - 1)
        k = m.end()
        while (f := re.compile(r"\n    (?:pub(?:\(crate\))? )?fn ").search(text, k, end)):
            at = text.index("fn ", f.start())
            starts.append(at)
            k = _matching_brace(text, _body_start(text, at) - 1)
    for at in starts:
        name = re.match(r"fn (\w+)", text[at:]).group(1)  # type: ignore[union-attr]
        body = text[_body_start(text, at):]
        found.append((name, body))
    return found


def test_every_binding_entry_point_runs_under_guard():
    # the rule: a binding's body is `guard(...)`, so a panic anywhere in it (argument
    # and array conversions included) is mapped; a new entry point without it fails here
    points = [(f.name, name, body) for f in sorted(BINDINGS.glob("*.rs"))
              for name, body in entry_points(f.read_text())]
    assert len(points) > 40, "the scan found the bindings"
    unguarded = [f"{file}:{name}" for file, name, body in points
                 if not body.lstrip().startswith("guard(")]
    assert not unguarded, f"entry points without guard(...): {unguarded}"
