"""Distribution: the registry API v2 client (registry.py) and pull (pull.py)."""
