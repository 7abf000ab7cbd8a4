"""argparse with docker's conventions, imported only by commands that build a parser
(importing argparse costs ~11 ms; `run` and `create` parse their usual flags without it)."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing (~3 ms)
if TYPE_CHECKING:
    from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse with docker's error shape and exit status (125 for usage errors)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: {message}\nSee '{self.prog} --help'.\n")
        sys.exit(125)


class BoolFlag(argparse.Action):
    """A boolean flag that also takes ``=false`` (``-H=false``), as docker's flags do."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs) -> None:
        kwargs.pop("nargs", None)
        super().__init__(option_strings, dest, nargs="?", const=True, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if isinstance(values, str):
            values = values.lower() not in ("false", "0", "no")
        setattr(namespace, self.dest, values)
