"""tierscan: MGLRU page-table scanning and its rival hot-page detectors for tiered memory,
on a page-granular model of Linux memory management."""

from .errors import ConfigError, InvariantError, OutOfMemory, SegmentationFault, TierscanError
from .kernel import Kernel
from .machine import Machine

__version__ = "0.1.0"
__all__ = ["Kernel", "Machine", "ConfigError", "InvariantError", "OutOfMemory",
           "SegmentationFault", "TierscanError", "__version__"]
