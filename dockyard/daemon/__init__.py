"""dockyardd: the engine's services behind the Docker Engine API."""
