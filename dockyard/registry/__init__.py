"""The registry server (``dockyard registry serve``): an OCI distribution-spec v1.1 server.

    errors.py   the spec's error codes and its ``{"errors": [...]}`` body
    storage.py  repositories over the engine's content store (dockyard/content): blobs
                verified and committed atomically, uploads as resumable ingests, manifests
                stored byte for byte, tags, referrers
    server.py   the HTTP API (aiohttp)
"""
