"""The backend registry: one name list, one error for an unknown name, consistent with the spec layer below it."""

import pytest

from zlt import backends
from zlt.core.errors import BadInputError
from zlt.spec.models import BACKENDS, TINY_MODEL_BACKENDS


def test_registry_names_are_the_specs():
    assert tuple(backends.names()) == BACKENDS
    assert [backends.get(n).name for n in backends.names()] == list(BACKENDS)


def test_tiny_model_rule_agrees_with_the_spec():
    assert tuple(n for n in backends.names() if backends.get(n).trains_tiny_model) == TINY_MODEL_BACKENDS


def test_unknown_backend_is_one_error_naming_the_field_and_the_choices():
    with pytest.raises(BadInputError) as e:
        backends.get("lightening")
    assert e.value.message.startswith("training.backend: unknown backend 'lightening'")
    assert e.value.hint == "use one of: ai-toolkit, musubi, lightning"
