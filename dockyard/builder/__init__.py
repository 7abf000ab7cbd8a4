"""The builder: Dockerfile to image."""
