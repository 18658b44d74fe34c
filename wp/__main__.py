"""``python -m wp``: the command line (wp.cli), after one process setting that changes no number.

glibc's malloc gives every allocation above 32 MB a fresh mapping and returns it on free, so each large
tensor of a job (activation maps, LUT codes) is page-faulted and zeroed by the kernel again every time:
on MobileNet-v2's sweep points that was over half the CPU time (system time). Keeping freed memory in
the heap (``M_MMAP_MAX`` 0, no trimming) removes it, at the price of a higher peak memory. Set
``WP_MALLOC=default`` to keep glibc's behaviour; elsewhere than glibc nothing changes.
"""

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (see the module docstring); False where it cannot."""
    if os.environ.get("WP_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):  # not glibc
        return False


if __name__ == "__main__":
    keep_freed_memory()
    from wp.cli import main

    raise SystemExit(main())
