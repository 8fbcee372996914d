"""Names and limits that the spec, the runner and the trainer child must agree on."""

from __future__ import annotations

TINY_MODEL = "zlt/tiny-zimage"
TURBO_MODEL = "Tongyi-MAI/Z-Image-Turbo"
# Captioners (zlt.caption): the built-in tiny random one for tests and demos, and the default real one.
TINY_CAPTIONER = "zlt/tiny-captioner"
DEFAULT_CAPTIONER = "florence-community/Florence-2-large"

# Consecutive logged steps with a nan/inf loss before a stop_on_nan job is stopped (the runner's watch and the
# built-in trainer's own stop use the same number).
NAN_PATIENCE = 5

# Files zlt never loads: pickle can run code when loaded.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
