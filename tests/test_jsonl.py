"""Strict JSON-lines reading (errors name file and line) and atomic writing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atkd.data.jsonl import read_jsonl, write_jsonl_atomic

REAL_DIR = Path("/work/shared/data/instruct-eval")


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_roundtrip_and_no_temp_files(tmp_path):
    records = [{"instruction": "Name a fruit.", "output": "kiwi", "answer_dist": {"kiwi": 1.0}}]
    records.append({"instruction": "Reverse: ä, 😀", "input": "x", "output": "y"})
    path = tmp_path / "sub" / "a.jsonl"
    assert write_jsonl_atomic(path, records) == 2
    assert list(read_jsonl(path)) == records
    assert write_jsonl_atomic(path, records[:1]) == 1  # overwrite
    assert list(read_jsonl(path)) == records[:1]
    assert [p.name for p in path.parent.iterdir()] == ["a.jsonl"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            '{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": "b"}\n{oops\n',
            3,
            "invalid JSON",
        ),
        ('{"instruction": "a", "output": "b"}\n["not", "an", "object"]\n', 2, "expected a JSON object"),
        ('{"instruction": "a"}\n', 1, "missing required field 'output'"),
        ('{"instruction": "a", "output": 3}\n', 1, "field 'output' must be str, got int"),
        (
            '{"instruction": "a", "output": "b"}\n\n\n{"output": "b"}\n',
            4,
            "missing required field 'instruction'",
        ),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path / "bad.jsonl", text)
    with pytest.raises(ValueError) as err:
        list(read_jsonl(path))
    assert f"{path}:{line}:" in str(err.value)
    assert message in str(err.value)


def test_invalid_utf8_names_the_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid UTF-8"):
        list(read_jsonl(path))


def test_typed_required_fields(tmp_path):
    good = _write(tmp_path / "g.jsonl", '{"choices": ["a", "b"], "gold": 1}\n')
    assert list(read_jsonl(good, required={"choices": list, "gold": int})) == [
        {"choices": ["a", "b"], "gold": 1}
    ]
    bad = _write(tmp_path / "b.jsonl", '{"choices": ["a", "b"], "gold": true}\n')
    with pytest.raises(ValueError, match=r"b\.jsonl:1: field 'gold' must be int, got bool"):
        list(read_jsonl(bad, required={"choices": list, "gold": int}))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"instruction": st.text(), "output": st.text()},
            optional={"input": st.text(), "n": st.integers(), "x": st.floats(allow_nan=False)},
        ),
        max_size=5,
    )
)
def test_roundtrip_property(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("p") / "r.jsonl"
    write_jsonl_atomic(path, records)
    assert list(read_jsonl(path)) == records


@pytest.mark.skipif(not REAL_DIR.is_dir(), reason="shared instruct-eval data not present")
def test_real_instruct_eval_files_load():
    files = sorted(REAL_DIR.glob("*.jsonl"))
    assert files
    for path in files:
        records = list(read_jsonl(path))
        assert records, path
        assert all(isinstance(r.get("input", ""), str) for r in records)
