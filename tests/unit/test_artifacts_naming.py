"""Artifact folder names: placeholders, versions, and hostile values that must never escape the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from zlt.core.errors import BadInputError
from zlt.core.naming import (
    MAX_NAME,
    NameValues,
    effective_pattern,
    parse_pattern,
    render_name,
    sanitize_name,
    uses_version,
)

VALUES = NameValues(job_id="20260801-120000-abc123", style_name="watercolor", preset="style", rank=16, steps=2000,
                    date="20260801")


def test_default_pattern():
    assert render_name("{job_id}_{style_name}_v0", VALUES) == "20260801-120000-abc123_watercolor_v0"


def test_every_placeholder_and_int_width():
    name = render_name("{style_name}-{preset}-r{rank}-s{steps}-{date}-v{version:03d}", VALUES, version=7)
    assert name == "watercolor-style-r16-s2000-20260801-v007"
    assert uses_version("{style_name}_v{version}") and not uses_version("{job_id}_{style_name}")


@pytest.mark.parametrize(("pattern", "effective"), [
    ("{job_id}_{style_name}_v0", "{job_id}_{style_name}_v{version}"),  # the user's pattern: v0 means "version here"
    ("{style_name}-v0.final", "{style_name}-v{version}.final"),
    ("v0_{style_name}", "v{version}_{style_name}"),
    ("{style_name}_v0_v0", "{style_name}_v0_v{version}"),  # only the last one
    ("{style_name}v0", "{style_name}v0"),  # not standing alone
    ("{style_name}_v01", "{style_name}_v01"),
    ("{style_name}_v0{rank}", "{style_name}_v0{rank}"),
    ("{style_name}_v{version:02d}_v0", "{style_name}_v{version:02d}_v0"),  # an explicit {version} wins
    ("{{v0}}_{style_name}", "{{v0}}_{style_name}"),
])
def test_literal_v0_reads_as_version(pattern, effective):
    assert effective_pattern(pattern) == effective


def test_literal_v0_renders_each_version():
    assert render_name("{job_id}_{style_name}_v0", VALUES, version=3) == "20260801-120000-abc123_watercolor_v3"
    assert uses_version("{job_id}_{style_name}_v0")


@pytest.mark.parametrize(
    "pattern, match",
    [
        ("{job_id.__class__}", "unknown placeholder"),
        ("{job_id[0]}", "unknown placeholder"),
        ("{nope}", "unknown placeholder"),
        ("{job_id!r}", "conversion"),
        ("{style_name:>99}", "format"),
        ("{version:{rank}}", "format"),
        ("{job_id", "expected '}'"),
        ("", "empty"),
    ],
)
def test_bad_patterns_name_the_field(pattern, match):
    with pytest.raises(BadInputError, match=match) as exc:
        parse_pattern(pattern)
    assert "output.naming.pattern" in exc.value.message


HOSTILE = [
    "../../etc/passwd",
    "..",
    ".",
    "/abs/path",
    "a/../../b",
    "..\\..\\windows",
    "name\x00with-nul",
    "new\nline",
    ".hidden",
    ".staging-host-1-abc",
    "~root",
    "$(rm -rf ~)",
    "名前_スタイル",
    "ｆｕｌｌｗｉｄｔｈ",
    "a" * 500,
    "   ",
    "-leading-dash",
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_values_stay_one_safe_component(tmp_path, raw):
    hostile = NameValues(job_id=raw, style_name=raw, preset="style", rank=1, steps=1, date="20260801")
    names = [sanitize_name(raw), render_name("{job_id}_{style_name}", hostile)]
    if raw.strip():  # the hostile text as the pattern itself (braces escaped)
        names.append(render_name(raw.replace("{", "{{").replace("}", "}}"), VALUES))
    for name in names:
        assert name and len(name) <= MAX_NAME
        assert name not in (".", "..") and not name.startswith((".", "-"))
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
        registry = tmp_path / "registry"
        assert (registry / name).resolve().parent == registry.resolve()


def test_long_names_stay_distinct():
    a, b = "x" * 300 + "1", "x" * 300 + "2"
    assert sanitize_name(a) != sanitize_name(b)
    assert len(sanitize_name(a)) <= MAX_NAME


def test_names_are_paths_inside_the_registry(tmp_path: Path):
    name = render_name("{style_name}/../../{job_id}", VALUES)
    assert "/" not in name and (tmp_path / name).parent == tmp_path
