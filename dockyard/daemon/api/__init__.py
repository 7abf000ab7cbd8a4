"""The Docker Engine API over aiohttp: one module per API group."""
