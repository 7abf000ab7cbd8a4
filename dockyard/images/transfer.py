"""``docker save`` / ``docker load`` archive formats.

    save(store, images: list[ExportImage], out)      # Docker 25+ layout, streamed to ``out``
    load(store, stream) -> list[LoadedImage]         # any docker / OCI / skopeo archive

See ``transfer_save`` for the layout written and ``transfer_load`` for the layouts read.
"""

from dockyard.images.transfer_load import LoadedImage, load
from dockyard.images.transfer_save import ExportImage, familiar, save

__all__ = ["ExportImage", "LoadedImage", "familiar", "load", "save"]
