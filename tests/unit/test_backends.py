"""The backend registry: the one name list (the spec below it takes any string; the gate asks the registry), one
error for an unknown name."""

import pytest

from zlt import backends
from zlt.core.errors import BadInputError
from zlt.spec.agent_schema import agent_spec_schema


def test_registry_names_are_the_ones_the_schema_lists():
    assert backends.names() == ["ai-toolkit", "musubi", "lightning"]
    assert [backends.get(n).name for n in backends.names()] == backends.names()
    schema = agent_spec_schema(backends.names())
    assert schema["$defs"]["TrainingSpec"]["properties"]["backend"]["enum"] == backends.names()


def test_only_the_builtin_trainer_trains_the_tiny_model():
    assert [n for n in backends.names() if backends.get(n).trains_tiny_model] == ["lightning"]


def test_unknown_backend_is_one_error_naming_the_field_and_the_choices():
    with pytest.raises(BadInputError) as e:
        backends.get("lightening")
    assert e.value.message.startswith("training.backend: unknown backend 'lightening'")
    assert e.value.hint == "use one of: ai-toolkit, musubi, lightning"
