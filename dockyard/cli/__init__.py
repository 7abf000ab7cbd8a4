"""The dockyard CLI: docker's commands, talking only to the daemon's API."""
