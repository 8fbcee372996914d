"""Hints an MCP client can act on: the library's hints name CLI commands and flags ("list jobs with 'zlt jobs'",
"--set dataset.resolution=768"); an agent that only has the MCP tools needs the tool and the argument instead."""

from __future__ import annotations

import re
from typing import Any

# Longest command first, so 'zlt artifacts show' wins over 'zlt artifacts'.
_COMMANDS: tuple[tuple[str, str], ...] = (
    ("zlt artifacts rm", "the server's CLI (artifacts rm: no MCP tool deletes a LoRA)"),
    ("zlt artifacts show", "the get_artifact tool"),
    ("zlt artifacts list", "the list_artifacts tool"),
    ("zlt artifacts", "the list_artifacts / get_artifact tools"),
    ("zlt jobs", "the list_jobs tool"),
    ("zlt status", "the get_job_status tool"),
    ("zlt retry", "the retry_job tool"),
    ("zlt cancel", "the cancel_job tool"),
    ("zlt logs", "the get_job_events tool"),
    ("zlt validate", "the validate_spec tool"),
    ("zlt render", "the render_config tool"),
    ("zlt submit", "the submit_lora_job tool"),
    ("zlt eval", "the evaluate tool"),
    ("zlt init", "validate_spec with just dataset.path (every other field has a default)"),
)
_SET = re.compile(r"--set\s+([a-z_][a-z0-9_.]*)=(\S+?)([,;)]?(?:\s|$))")
_ARGS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"--profile\s+(\S+?)([,;)]?(?:\s|$))"), r"profile argument '\1'\2"),
    (re.compile(r"(?:--backend|-b)\s+(\S+?)([,;)]?(?:\s|$))"), r"backend argument '\1'\2"),
    (re.compile(r"--vram-gb\s+(\S+?)([,;)]?(?:\s|$))"), r"vram_gb argument \1\2"),
    (re.compile(r"--skip-preflight"), "skip_preflight argument true"),
)


def mcp_hint(text: str) -> str:
    """The same advice in the MCP client's terms; text without CLI words comes back unchanged."""
    if not text or ("zlt " not in text and "--" not in text):
        return text
    out = _SET.sub(lambda m: f"set {m.group(1)} to {m.group(2)} in the spec{m.group(3)}", text)
    for pattern, repl in _ARGS:
        out = pattern.sub(repl, out)
    for cmd, tool in _COMMANDS:
        if cmd in out:
            # 'zlt logs ID --events' in quotes goes whole; a bare command only by its own words.
            out = re.sub(rf"'{re.escape(cmd)}(?:\s[^']*)?'", tool, out)
            out = re.sub(rf"\b{re.escape(cmd)}\b(?:\s+(?:<[^>]+>|[\w.-]*\d[\w.-]*|--[a-z-]+))*", tool, out)
    return out


def translate_error(result: dict[str, Any]) -> dict[str, Any]:
    """An error result with every hint (and the 'detail' lines) in MCP terms."""
    out = dict(result)
    if isinstance(out.get("hint"), str):
        out["hint"] = mcp_hint(out["hint"])
    if isinstance(out.get("errors"), list):
        out["errors"] = [{**e, "hint": mcp_hint(e.get("hint", ""))} if isinstance(e, dict) else e
                         for e in out["errors"]]
    return out
