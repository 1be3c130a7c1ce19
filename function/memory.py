"""What a page may cost: the pod's memory limit, each engine's measured memory model, and the pixel
budget per page that keeps `OCR_CONCURRENCY` documents at once inside the limit.

A blank page at the documented `OCR_MAX_PIXELS` (100 Mpx) cost rapidocr ~1.4 GB; two at once (the CPU
manifest's concurrency) passed its 4 GiB limit, an OOM kill that a redelivered event repeats. So the
largest page is derived from the memory the pod has (its cgroup limit, or `OCR_MEMORY_LIMIT_MB`):

    idle + concurrency × (per_doc + bytes_per_pixel × pixels) ≤ HEADROOM × limit

Nothing here imports the rest of the function; `config.load_settings` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024
HEADROOM = 0.9  # of the limit: the interpreter's own growth, the allocator's slack, the store's buffers
# The smallest budget worth starting with: an A4 page at 150 dpi.
MIN_PAGE_PIXELS = 1240 * 1754
# A PDF's renderer process (pdf_render.py) holds the page's bitmap at 3 bytes a pixel while it sends
# it, next to the worker's copy: counted per document on top of the engine's model.
RENDER_PER_DOC_MB = 64
RENDER_BYTES_PER_PIXEL = 4


@dataclass(frozen=True)
class MemoryModel:
    """Resident memory of a worker with this engine: `idle_mb` once loaded, and per document in
    progress `per_doc_mb` plus `bytes_per_pixel` for its page (decoded page, engine buffers)."""

    idle_mb: int
    per_doc_mb: int
    bytes_per_pixel: float
    source: str  # how the figures were obtained

    @property
    def _fixed(self) -> int:
        """A document's bytes before its pixels, its renderer process included."""
        return (self.per_doc_mb + RENDER_PER_DOC_MB) * MB

    @property
    def _per_pixel(self) -> float:
        return self.bytes_per_pixel + RENDER_BYTES_PER_PIXEL

    def worst_case(self, concurrency: int, pixels: int) -> int:
        """Bytes a worker may hold with `concurrency` documents of `pixels`-pixel pages at once."""
        return int(self.idle_mb * MB + concurrency * (self._fixed + self._per_pixel * pixels))

    def pixel_budget(self, limit: int, concurrency: int) -> int:
        """The largest page that keeps `worst_case` within `HEADROOM` of `limit` bytes."""
        spare = HEADROOM * limit - self.idle_mb * MB - concurrency * self._fixed
        return max(int(spare / (concurrency * self._per_pixel)), 0)


# Measured with `python -m bench.memory` (BENCHMARKS.md, "Memory per page"): a blank PNG page of
# 4, 16 and 48 Mpx through the service's open + the engine's predict, each in a new process, on
# tcmalloc as the CPU image runs and on glibc's malloc with 2 arenas as the GPU image runs (rapidocr
# took ~100 MB more a document there); peak RSS (VmHWM) over the loaded engine's RSS. Rounded up.
MODELS = {
    "rapidocr": MemoryModel(idle_mb=350, per_doc_mb=550, bytes_per_pixel=11, source="measured"),
    "tesseract": MemoryModel(idle_mb=320, per_doc_mb=64, bytes_per_pixel=26, source="measured"),
    # Both engines loaded (373 MB idle measured) and Tesseract's OSD on every page; a page costs what
    # the engine it is routed to costs: rapidocr's per document (619 MB measured at 4 Mpx with OSD),
    # Tesseract's per pixel.
    "cpu": MemoryModel(idle_mb=450, per_doc_mb=650, bytes_per_pixel=26, source="measured"),
    # ASSUMED, not measured here (no GPU): the manifest's "6-10 GB of host memory" for the VLM and
    # the layout model, and a page's host-side pre-processing like the CPU engines'.
    "paddleocr-vl": MemoryModel(idle_mb=10 * 1024, per_doc_mb=1024, bytes_per_pixel=26, source="assumed"),
}


def cgroup_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory limit of this process's cgroup (v2 `memory.max`, else v1), or None if unlimited."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max" or not text.isdigit() or int(text) >= 1 << 60:  # v1 says "unlimited" this way
            return None
        return int(text)
    return None
