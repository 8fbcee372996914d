"""The artifact registry: a complete, hashed, reusable folder per finished job, indexed in the job store.

Heavy work (numpy, matplotlib) happens lazily inside the functions that need it; importing this package is cheap.
"""

from __future__ import annotations

from zlt.artifacts.collect import ArtifactExistsError, ArtifactRecord, collect_artifact
from zlt.artifacts.registry import (
    VerifyResult,
    artifact_file,
    export_artifact,
    get_artifact,
    list_artifacts,
    remove_artifact,
    verify_artifact,
)

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
