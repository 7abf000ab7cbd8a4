"""``--cache-from``: images, typically pulled from a registry, whose history serves as a
build cache on a host that never built them, as in docker's classic builder.

A step matches a source image when the source's history and layers begin with those of the
step's parent image (each history entry's ``created_by`` and ``empty_layer``, each layer's
diff ID) and its next history entry is the step's own: the same ``created_by`` (which names
the step's instruction, its build args and, for COPY/ADD, a hash of what is copied) with a
layer or without one as the step makes. The step's image is then the parent plus the
source's next layer, with the config this build computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dockyard.images.model import Descriptor


@dataclass(frozen=True)
class SourceLayer:
    image: Any  # the cache-from Image the layer comes from
    layer: Descriptor | None  # None: the step makes no layer
    diff_id: str | None


def _entries(image: Any | None) -> list[tuple[str, bool]]:
    if image is None:
        return []
    return [(h.get("created_by", ""), bool(h.get("empty_layer"))) for h in image.config.history]


class CacheSources:
    def __init__(self, images: list[Any]) -> None:
        self.images = images

    def find(self, parent: Any | None, created_by: str, empty_layer: bool) -> SourceLayer | None:
        """The layer a source image has for this step on ``parent`` (None: scratch)."""
        history = _entries(parent)
        diff_ids = list(parent.config.diff_ids) if parent is not None else []
        for source in self.images:
            theirs = _entries(source)
            if len(theirs) <= len(history) or theirs[:len(history)] != history:
                continue
            if list(source.config.diff_ids[:len(diff_ids)]) != diff_ids:
                continue
            if theirs[len(history)] != (created_by, empty_layer):
                continue
            if empty_layer:
                return SourceLayer(source, None, None)
            if len(source.manifest.layers) > len(diff_ids):
                return SourceLayer(source, source.manifest.layers[len(diff_ids)], source.config.diff_ids[len(diff_ids)])
        return None


def layer_writer(content: Any, found: SourceLayer) -> Callable[[Any], str | None]:
    """``write_layer`` for ImageService.add_step: the source's layer, uncompressed (add_step
    records the layer as a plain tar), checked against its diff ID when applied."""
    from dockyard.archive import decompress

    assert found.layer is not None

    def write(writer: Any) -> str | None:
        with content.open(found.layer.digest) as blob:
            plain = decompress(blob)
            try:
                while chunk := plain.read(1 << 20):
                    writer.write(chunk)
            finally:
                plain.close()
        return found.diff_id

    return write


__all__ = ["CacheSources", "SourceLayer", "layer_writer"]
