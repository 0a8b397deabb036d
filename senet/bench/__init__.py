"""Benchmarks of senet's SE against timm, torchvision, MONAI and the memory-bandwidth bound.

``run_benchmarks(quick=False, threads=1, out=None)`` runs the SE block suite and the whole-model
suite under glibc's default allocator and under senet's tuned one (:func:`tune_allocator`), each in
its own process, and returns (and writes) the JSON; ``format_results`` prints it as tables.
"""

from senet.bench.allocator import TUNED_SETTINGS, tune_allocator
from senet.bench.run import format_results, run_benchmarks

__all__ = ["run_benchmarks", "format_results", "tune_allocator", "TUNED_SETTINGS"]
