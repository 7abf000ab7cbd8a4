"""Durations as docker prints them ("Up 3 minutes", "2 hours ago"): go-units' HumanDuration.
Shared by the CLI (image and container tables) and the daemon (a container's Status)."""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    """Approximate duration like go-units HumanDuration (docker's "Up 3 minutes")."""
    secs = int(seconds)  # truncates toward zero, as Go's int(d.Seconds())
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    # go-units rounds hours to nearest (1h29m is "About an hour", 1h31m "2 hours"),
    # while seconds and minutes are truncated.
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"
