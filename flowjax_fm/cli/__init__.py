"""The ``flowjax-fm`` command: one module per sub-command, flags only.

The work is in :mod:`flowjax_fm.experiments`; the defaults live in its config and in the
keyword defaults of its jobs, so a flag that is not given does not restate them.

Exit codes: 0 success; 2 bad input or an error the user can act on (one line
``flowjax-fm: error: ...``: unknown names, bad numbers, unreadable or mis-shaped files, an
``--out`` that is not a new directory, a damaged run, out of memory, a failed ODE solve, a
coordinator that does not answer); 3 a non-finite training loss (the last good state is saved);
130 an interrupt (the last completed chunk is saved).
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit code 2."""

    def error(self, message):
        command = self.prog.split()[1:]  # "flowjax-fm train" -> the sub-command, named in the line
        where = f"{command[0]}: " if command else ""
        self.exit(2, f"flowjax-fm: error: {where}{message}\n")


def one_line(exc: BaseException) -> str:
    """The one line a user sees of an error (OS errors as ``file: reason``)."""
    from flowjax_fm._checks import first_line

    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return first_line(exc)


def _parser() -> argparse.ArgumentParser:
    from flowjax_fm.cli import bench, loglik, reflow, sample, train

    p = _Parser(prog="flowjax-fm", description="Flow matching in JAX.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in (train, sample, loglik, reflow, bench):
        module.add_parser(sub)
    return p


def main(argv=None) -> int:
    """Run ``flowjax-fm`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = _parser()
    if argv[:1] == ["bench"]:  # everything after "bench" belongs to the suite runner
        from flowjax_fm.cli import bench

        handler, args = bench.run, argv[1:]
    else:
        args = parser.parse_args(argv)
        handler = args.handler
    try:
        return handler(args)
    except BaseException as exc:
        code = _exit_code(exc)
        if code is None or os.environ.get("FLOWJAX_FM_TRACEBACK"):  # debugging: the traceback
            raise
        if code == 130:
            parser.exit(130, "flowjax-fm: interrupted (the last completed chunk is saved)\n")
        parser.exit(code, f"flowjax-fm: error: {one_line(exc)}\n")


def _exit_code(exc: BaseException) -> int | None:
    if isinstance(exc, FloatingPointError):  # a non-finite loss: the last good state is on disk
        return 3
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, ValueError | OSError | RuntimeError | MemoryError):
        return 2
    return None


if __name__ == "__main__":
    sys.exit(main())
