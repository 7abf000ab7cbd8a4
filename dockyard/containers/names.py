"""Container names: docker's validation rule and random ``adjective_surname`` names.

The word lists are dockyard's own (docker's list is not copied); only the shape of a
generated name (``adjective_surname``, a digit appended on retry) follows docker.
"""

from __future__ import annotations

import random
import re

from dockyard.errors import InvalidArgument

VALID_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

ADJECTIVES = (
    "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring", "deft",
    "eager", "earnest", "fearless", "gentle", "glowing", "humble", "jolly", "keen", "kind",
    "lively", "lucid", "merry", "mellow", "nimble", "patient", "plucky", "quiet", "rapid",
    "serene", "sharp", "silent", "steady", "sunny", "swift", "tidy", "upbeat", "vivid", "warm",
    "witty", "zesty",
)

# Scientists and engineers chosen for dockyard.
SURNAMES = (
    "ada", "babbage", "bardeen", "bohr", "boole", "cerf", "curie", "dijkstra", "einstein",
    "euler", "faraday", "fermi", "feynman", "gauss", "godel", "hamilton", "hertz", "hopper",
    "kahn", "kepler", "knuth", "lamarr", "lamport", "liskov", "lovelace", "maxwell", "meitner",
    "mendel", "noether", "ohm", "pascal", "planck", "ramanujan", "ritchie", "shannon",
    "thompson", "turing", "volta", "wozniak", "yonath",
)


def validate_name(name: str) -> str:
    """Docker's rule; returns the name with docker's leading ``/``, as inspect shows it."""
    if not isinstance(name, str) or not VALID_NAME.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name if name.startswith("/") else "/" + name


def random_name(retry: int = 0, rng: random.Random | None = None) -> str:
    """``adjective_surname``; from the second attempt on a digit is appended, as docker
    does, so that a caller retrying after a collision finds a free name quickly."""
    r = rng or random
    name = f"{r.choice(ADJECTIVES)}_{r.choice(SURNAMES)}"
    if retry > 0:
        name += str(r.randint(0, 9))
    return name


def generate_name(taken: object = (), attempts: int = 10, rng: random.Random | None = None) -> str:
    """A random name not in ``taken`` (anything supporting ``in``)."""
    for i in range(attempts):
        name = random_name(i, rng)
        if name not in taken and "/" + name not in taken:  # type: ignore[operator]
            return name
    raise InvalidArgument("could not generate a unique container name")
