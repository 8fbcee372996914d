"""The user config file, `~/.config/zlt/config.toml` (or $ZLT_CONFIG, or $XDG_CONFIG_HOME/zlt/config.toml).

It says where this machine's trainer installs are, so specs stay machine-independent:

    ai_toolkit = "/opt/ai-toolkit"            # checkout with run.py
    ai_toolkit_python = "/opt/ai-toolkit/venv/bin/python"
    musubi = "/opt/musubi-tuner"              # checkout with src/musubi_tuner/
    musubi_python = "/opt/musubi-tuner/.venv/bin/python"

The same keys may sit under a `[trainers]` table. Environment variables beat the file: ZLT_AI_TOOLKIT, ZLT_AI_TOOLKIT_PYTHON, ZLT_MUSUBI, ZLT_MUSUBI_PYTHON.
A missing file is an empty config; a broken one is a BadInputError that names the file and the key.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zlt.core.errors import BadInputError
from zlt.core.paths import user_config_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class TrainerPaths(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ai_toolkit: str | None = Field(None, description="ostris/ai-toolkit checkout (the folder with run.py).")
    ai_toolkit_python: str | None = Field(None, description="Python of the ai-toolkit environment.")
    musubi: str | None = Field(None, description="kohya-ss/musubi-tuner checkout (the folder with src/musubi_tuner).")
    musubi_python: str | None = Field(None, description="Python of the musubi-tuner environment.")


class UserConfig(TrainerPaths):
    """Top-level keys, or the same keys under a `[trainers]` table (top level wins)."""

    trainers: TrainerPaths = Field(default_factory=lambda: TrainerPaths.model_validate({}),
                                   description="The same keys, grouped.")

    def get(self, key: str) -> str | None:
        return getattr(self, key) or getattr(self.trainers, key)


def load_user_config(path: Path | None = None) -> UserConfig:
    """The user config; every problem reported at once with the file and key."""
    p = path or user_config_path()
    if not p.is_file():
        return UserConfig.model_validate({})
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{p}: cannot read the zlt config ({e})", hint="save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInputError(f"{p}: invalid TOML: {e}", hint='write one `key = "value"` per line') from None
    try:
        return UserConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(x) for x in err["loc"])
            problems.append(f"{key}: {'unknown key' if err['type'] == 'extra_forbidden' else err['msg']}")
        allowed = ", ".join(TrainerPaths.model_fields)
        raise BadInputError(f"{p}: " + "; ".join(problems), hint=f"allowed keys: {allowed}") from None


def config_value(key: str, path: Path | None = None) -> str | None:
    """One key of the user config, expanded (`~` -> home), or None."""
    value = load_user_config(path).get(key)
    return str(Path(value).expanduser()) if value else None
