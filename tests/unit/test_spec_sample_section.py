"""Issue 13 item 10: `zlt init` shows the sample section, and a render samples only the spec's prompts."""

from __future__ import annotations

import pytest
import yaml

from zlt.backends import render_spec
from zlt.core.errors import SpecError
from zlt.profiles import get_profile
from zlt.spec import load_spec_data
from zlt.spec.starter import starter_spec


def test_the_starter_spec_has_a_sample_section_with_prompts():
    data = yaml.safe_load(starter_spec())
    sample = data["training"]["sample"]
    assert sample["enable"] is False and sample["prompts"] and all("[trigger]" in p for p in sample["prompts"])


def _aitoolkit_prompts(sample: dict) -> list[str]:
    spec = load_spec_data({"dataset": {"path": "/tmp"}, "training": {"backend": "ai-toolkit", "sample": sample}},
                          source="t").spec
    (text,) = render_spec(spec, "ai-toolkit", get_profile("24gb")).files.values()
    doc = yaml.safe_load(text)
    return doc["config"]["process"][0]["sample"]["prompts"]


def test_the_ai_toolkit_render_carries_only_the_specs_prompts():
    assert _aitoolkit_prompts({"enable": True, "prompts": ["[trigger] a red fox"]}) == ["<zstyle> a red fox"]
    assert _aitoolkit_prompts({"enable": False, "prompts": []}) == []


def test_sampling_on_without_prompts_is_a_spec_error():
    with pytest.raises(SpecError) as e:
        load_spec_data({"dataset": {"path": "/tmp"}, "training": {"sample": {"enable": True, "prompts": []}}}, source="t")
    assert [x.path for x in e.value.errors] == ["training.sample"] and "prompts" in e.value.errors[0].message
