"""A logging handler on the standard error of the moment: the one the CLI's log output and the
training log's bridge from mmengine share. Light: the standard library only."""
from __future__ import annotations

import logging
import sys


class CurrentStderrHandler(logging.StreamHandler):
    """A :class:`logging.StreamHandler` whose stream is whatever ``sys.stderr`` is when a record
    comes (test runners and click's CliRunner swap it); setting the stream is ignored."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass
