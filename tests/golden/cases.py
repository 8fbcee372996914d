"""Golden cases: every external template x bundled GPU profile x preset, rendered with fixed paths.

Regenerate after an intended change with `python -m tests.golden.cases` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

from zlt.backends import render_spec
from zlt.core.errors import BadInputError
from zlt.preflight.select import ensure_fits
from zlt.profiles import gpu_profiles
from zlt.render import RenderContext
from zlt.spec import load_spec_data

GOLDEN = Path(__file__).resolve().parent
BACKENDS = ("ai-toolkit", "musubi")
PRESETS = ("style", "character")
CTX = RenderContext(
    dataset_dir=Path("/data/prepared"),
    output_dir=Path("/jobs/j1/output"),
    config_dir=Path("/jobs/j1/render"),
    job_id="j1",
    cache_dir=Path("/zlt/cache"),
    trainer_root=Path("/opt/trainer"),
    python="python",
    zlt_python="python3",
    log_path=Path("/jobs/j1/trainer.log"),
    models_dir=Path("/models/z-image"),
)


def cases():
    for backend in BACKENDS:
        for preset in PRESETS:
            for profile in gpu_profiles():
                yield backend, preset, profile


def render_case(backend: str, preset: str, profile) -> dict:
    """The parsed render of one case, or the refusal it gets."""
    import tomllib
    import yaml

    spec = load_spec_data({"name": f"golden_{preset}", "preset": preset, "training": {"backend": backend}}).spec
    try:
        ensure_fits(spec, profile, backend)
    except BadInputError as e:
        return {"refused": e.message, "hint": e.hint}
    result = render_spec(spec, backend, profile, CTX)
    files = {}
    for name, text in result.files.items():
        files[name] = yaml.safe_load(text) if name.endswith((".yaml", ".yml")) else tomllib.loads(text)
    return {"files": files, "argv": result.argv, "cwd": result.cwd, "warnings": result.warnings,
            "step_names": result.step_names}


def golden_path(backend: str, preset: str, profile_name: str) -> Path:
    return GOLDEN / backend / f"{preset}_{profile_name}.json"


def main() -> None:
    for backend, preset, profile in cases():
        path = golden_path(backend, preset, profile.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(render_case(backend, preset, profile), indent=2, sort_keys=True) + "\n")
        print(path.relative_to(GOLDEN))


if __name__ == "__main__":
    main()
