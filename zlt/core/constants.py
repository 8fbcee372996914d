"""Names and limits that the spec, the runner and the trainer child must agree on."""

from __future__ import annotations

TINY_MODEL = "zlt/tiny-zimage"
TURBO_MODEL = "Tongyi-MAI/Z-Image-Turbo"

# Consecutive logged steps with a nan/inf loss before a stop_on_nan job is stopped (the runner's watch and the
# built-in trainer's own stop use the same number).
NAN_PATIENCE = 5

# Files zlt never loads: pickle can run code when loaded.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
