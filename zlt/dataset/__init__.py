"""Dataset intake: `check_dataset` reports every problem, `prepare_dataset` writes a clean,
content-addressed training folder, `prepare_cached` does that inside the zlt cache.

Importing this package does not import Pillow; the functions do when called.
"""

from zlt.dataset.cache import cached_dir, prepare_cached
from zlt.dataset.check import check_dataset, default_spec
from zlt.dataset.prepare import PrepareResult, needs_prepared_flip, prepare_dataset
from zlt.dataset.report import CODES, DatasetReport, Finding, ImageRecord

__all__ = [
    "CODES", "DatasetReport", "Finding", "ImageRecord", "PrepareResult", "cached_dir", "check_dataset",
    "default_spec", "needs_prepared_flip", "prepare_cached", "prepare_dataset",
]
