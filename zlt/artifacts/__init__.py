"""The artifact registry: a complete, hashed, reusable folder per finished job, indexed in the job store.

Heavy work (numpy, matplotlib) happens lazily inside the functions that need it; importing this package is cheap.
"""

from __future__ import annotations

# Names resolve on first use (PEP 562): the spec's naming check imports zlt.core.naming, and `zlt render` must
# not pay for the collector and the registry it never calls.
_WHERE = {
    "ArtifactExistsError": "collect", "ArtifactRecord": "collect", "collect_artifact": "collect",
    "VerifyResult": "registry", "artifact_file": "registry", "export_artifact": "registry", "get_artifact": "registry",
    "list_artifacts": "registry", "remove_artifact": "registry", "verify_artifact": "registry",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"zlt.artifacts.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'zlt.artifacts' has no attribute {name!r}")


__all__ = [
    "ArtifactExistsError",
    "ArtifactRecord",
    "VerifyResult",
    "artifact_file",
    "collect_artifact",
    "export_artifact",
    "get_artifact",
    "list_artifacts",
    "remove_artifact",
    "verify_artifact",
]
