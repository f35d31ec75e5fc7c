"""User-facing errors: one sentence that says what is wrong and what to do.

Every package derives its own errors from :class:`UserError`. Command-line entry points catch it,
print ``error: <message>`` on one line and exit non-zero; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn, TypeVar

T = TypeVar("T")


class UserError(Exception):
    """An error caused by input or environment that a person can act on.

    ``exit_code`` is what the process exits with when this error ends a command.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


def fail(err: BaseException, *, debug: bool, prog: str) -> NoReturn:
    """Report ``err`` the way a command-line user should see it, then exit."""
    if debug:
        import logging  # lazy: boot-time commands should not pay for it

        logging.getLogger(prog).exception("%s failed", prog)
    if isinstance(err, UserError):
        msg = " ".join(err.message.split("\n"))
        print(f"{prog}: error: {msg}", file=sys.stderr)
        sys.exit(err.exit_code)
    if isinstance(err, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    print(f"{prog}: internal error: {type(err).__name__}: {err} (run with --debug for details)", file=sys.stderr)
    sys.exit(70)


def guarded(fn: Callable[[], T], *, debug: bool, prog: str) -> T:
    """Run ``fn``; turn any exception into a one-line message and an exit code."""
    try:
        return fn()
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - this is the top-level boundary
        fail(err, debug=debug, prog=prog)
