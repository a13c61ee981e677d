"""``ast.parse`` for tests that read plait's own source, safe against a CPython 3.11 bug.

CPython 3.11 keeps the depth counter of the AST builder in state shared by every thread of the
interpreter, so an ``ast.parse`` that runs while another thread builds an AST — and Python 3.11
builds one to place the ``^^^`` of every traceback it formats, which plait's threads do when a
process excepts — can fail with ``SystemError: AST constructor recursion depth mismatch``
(python/cpython#106905). The parse itself is pure, so it is simply tried again.
"""

from __future__ import annotations

import ast

__all__ = ["parse_source"]


def parse_source(source: str, filename: str = "<unknown>") -> ast.Module:
    for attempt in range(5):
        try:
            return ast.parse(source, filename=filename)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")
