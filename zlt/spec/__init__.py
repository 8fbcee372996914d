"""The job spec: models, presets, loading with provenance."""

from zlt.spec.load import LoadedSpec, dump_spec_yaml, load_spec, load_spec_data
from zlt.spec.models import JobSpec

__all__ = ["JobSpec", "LoadedSpec", "dump_spec_yaml", "load_spec", "load_spec_data"]
