"""Keep numba's on-disk cache of this package consistent across its modules.

numba invalidates a cached kernel when *its own* source file changes, not when a
function it calls from another module does: after an edit of ``models.py`` the cached
``simulate._heap_run`` would still run the old phase-transition curve. So at import the
package hashes all its sources and, when the hash differs from the one stored next to
the cache, removes the package's cached kernels (they recompile on first use).
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def invalidate_stale_kernels() -> None:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    cache = here / "__pycache__"
    stamp = cache / "sparseprop_sources.sha256"
    want = digest.hexdigest()
    try:
        if stamp.is_file() and stamp.read_text() == want:
            return
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(want)
    except OSError:
        pass  # a read-only install: its sources do not change either
