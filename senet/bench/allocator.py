"""glibc allocator tuning for processes senet owns (its command line and benchmarks).

On Linux, glibc's ``malloc`` serves large blocks with ``mmap`` and returns them to the OS on ``free``
(the threshold grows dynamically up to 32 MiB, so every block above that is always fresh). A tensor op
producing a fresh 100 MB output then page-faults on every one of its pages, which makes e.g. an SE
block at ResNet-50's first stage several times slower than the memory-bandwidth bound. Raising the
thresholds keeps freed blocks in the heap for reuse:

============================  ================  =============================================
``mallopt`` parameter          senet's value     effect
============================  ================  =============================================
``M_MMAP_THRESHOLD``           1 GiB             blocks below it come from the heap, not ``mmap``
``M_TRIM_THRESHOLD``           1 GiB             free memory at the heap top is kept up to this
``M_TOP_PAD``                  64 MiB            the heap grows in steps of at least this
============================  ================  =============================================

The same setting without senet: ``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824
MALLOC_TOP_PAD_=67108864 python ...``. The price: the process's resident memory stays at its peak.
senet applies it only where it owns the process (``senet`` CLI commands and ``senet bench``), never on
``import senet``. Elsewhere (macOS, Windows, musl) :func:`tune_allocator` does nothing.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["TUNED_SETTINGS", "tune_allocator", "glibc_version"]

# mallopt parameter numbers from glibc's <malloc.h>
_MALLOPT_PARAMS: dict[str, int] = {"M_TRIM_THRESHOLD": -1, "M_TOP_PAD": -2, "M_MMAP_THRESHOLD": -3}

TUNED_SETTINGS: dict[str, int] = {
    "M_MMAP_THRESHOLD": 1 << 30,
    "M_TRIM_THRESHOLD": 1 << 30,
    "M_TOP_PAD": 64 << 20,
}


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p  # glibc only (musl has no such symbol)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    except (OSError, AttributeError):
        return None
    return libc


def glibc_version() -> str | None:
    """The running glibc's version, or ``None`` where the C library is not glibc."""
    libc = _glibc()
    return None if libc is None else libc.gnu_get_libc_version().decode()


def tune_allocator() -> dict[str, int]:
    """Apply :data:`TUNED_SETTINGS` to this process's glibc ``malloc``; return what was applied.

    Returns ``{}`` (and changes nothing) where glibc is absent. The setting lasts for the life of the
    process; it cannot be undone exactly, so benchmarks compare it against the default in separate
    processes.
    """
    libc = _glibc()
    if libc is None:
        return {}
    applied = {}
    for name, value in TUNED_SETTINGS.items():
        if libc.mallopt(_MALLOPT_PARAMS[name], value) == 1:
            applied[name] = value
    return applied
