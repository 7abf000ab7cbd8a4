"""docker's ``label`` filter: ``key`` (present) or ``key=value`` (equal), for containers,
images and volumes alike."""

from __future__ import annotations


def label_matches(labels: dict[str, str] | None, wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    labels = labels or {}
    return key in labels and (not eq or labels[key] == value)
