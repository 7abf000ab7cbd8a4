"""Content store: blobs addressed by digest, with an ingest -> commit split.

Interface (implemented by ``dockyard.content.local.LocalStore``; the registry server reuses it):

    store = LocalStore(root)                  # root/blobs/sha256/<hex>, root/ingest/<ref>/
    store.info(digest) -> BlobInfo            # NotFound if absent
    store.exists(digest) -> bool
    store.open(digest) -> BinaryIO            # seekable reader; NotFound
    store.path(digest) -> str                 # filesystem path of a committed blob (read only!)
    store.writer(ref, expected=None, total=None) -> Writer
        # resumes an interrupted ingest with the same ref (writer.offset == bytes already there)
    store.ingests() -> list[IngestStatus]
    store.abort(ref)                          # drops an ingest; NotFound if none
    store.walk() -> Iterator[BlobInfo]
    store.delete(digest)                      # NotFound if absent
    store.gc(keep: Iterable[str]) -> list[str]  # deletes blobs not in keep, returns their digests
    store.put(data: bytes, expected=None) -> str   # convenience: write + commit in one go

    Writer: .ref, .offset, .digest() (of what was written so far), .write(b), .commit(size=None,
    expected=None) -> digest (DataCorruption on mismatch; the ingest is then removed), .close()
    (keeps the ingest for resumption), .abort(), .flush(), .open_reader() (a file following
    the flushed data, still readable after commit). Usable as a context manager (close on exit).
"""

from dockyard.content.digest import Digest, sha256_digest, validate_digest  # noqa: F401
