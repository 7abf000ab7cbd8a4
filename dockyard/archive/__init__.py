"""Layer tars: safe apply onto a snapshot, diff of a snapshot back into a layer tar,
and (de)compression.

    decompress(stream) -> BinaryIO                 # gzip / zstd / bzip2 / xz / plain, by magic
    detect_compression(first_bytes) -> "gzip" | "zstd" | "bzip2" | "xz" | None
    compress(stream, out, kind, *, level=None)     # kind: "gzip" | "zstd" | "bzip2" | "xz"
    apply_layer(stream, mounts, *, final_mounts=None) -> ApplyResult(diff_id, size)
        # applies a (possibly compressed) layer tar onto the snapshot described by
        # ``mounts`` (as returned by Snapshotter.prepare) WITHOUT mounting: into the
        # overlay upperdir (OCI whiteouts -> overlay whiteouts: char 0/0 and the
        # trusted.overlay.opaque xattr) or into the bind source (native: whiteouts delete).
        # diff_id is the sha256 of the uncompressed tar stream; size = bytes of content.
        # Never creates, changes or chmods anything outside the target: every path is
        # resolved inside it (openat2 RESOLVE_IN_ROOT, or an equivalent manual walk).
        # final_mounts: unpack into an overlay upperdir before its lowers are done (pulls).
    changes(lower_mounts, upper_mounts) -> list[Change]   # Change(kind "A"|"C"|"D", path)
    write_diff(lower_mounts, upper_mounts, out) -> DiffResult(diff_id, size)
        # writes an uncompressed layer tar (PAX, OCI whiteouts) of what upper adds/changes/
        # deletes relative to lower; size = bytes written, diff_id = their sha256.

Modules: compression (codecs), layers (mounts -> layer dirs, merged read-only view),
scoped (in-root path resolution), apply, diff.
"""

from dockyard.archive.apply import ApplyResult, apply_layer
from dockyard.archive.compression import Compression, compress, decompress, detect_compression
from dockyard.archive.diff import Change, DiffResult, changes, write_diff

__all__ = [
    "ApplyResult",
    "Change",
    "Compression",
    "DiffResult",
    "apply_layer",
    "changes",
    "compress",
    "decompress",
    "detect_compression",
    "write_diff",
]
