"""Layer tars: safe apply onto a snapshot, diff of a snapshot back into a layer tar,
and (de)compression.

    decompress(stream) -> BinaryIO                 # gzip / zstd / plain, by magic bytes
    detect_compression(first_bytes) -> "gzip" | "zstd" | None
    compress(stream, out, kind)                    # kind: "gzip" | "zstd"
    apply_layer(stream, mounts, *, lowers_for_lookup=None) -> ApplyResult(diff_id, size)
        # applies a (possibly compressed) layer tar onto the snapshot described by
        # ``mounts`` (as returned by Snapshotter.prepare) WITHOUT mounting: into the
        # overlay upperdir (OCI whiteouts -> overlay whiteouts: char 0/0 and the
        # trusted.overlay.opaque xattr) or into the bind source (native: whiteouts delete).
        # diff_id is the sha256 of the uncompressed tar stream; size = bytes of content.
        # Never creates, changes or chmods anything outside the target.
    changes(lower_mounts, upper_mounts) -> list[Change]   # Change(kind "A"|"C"|"D", path)
    write_diff(lower_mounts, upper_mounts, out) -> DiffResult(diff_id, size)
        # writes an uncompressed layer tar (PAX, OCI whiteouts) of what upper adds/changes/
        # deletes relative to lower.
"""
