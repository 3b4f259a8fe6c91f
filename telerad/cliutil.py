"""Helpers every subcommand uses: common options and error reporting (the settings: ``telerad.settings.settings_from_args``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from telerad.errors import TeleradError

log = logging.getLogger(__name__)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main()`` returns a code."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        raise SystemExit(f"{self.prog}: error: {message}")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--data-dir``, which every command honours."""
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (env: TELERAD_CONFIG)")
    parser.add_argument("--data-dir", metavar="DIR", help="index, store and queue folder (env: TELERAD_DATA_DIR, default ./var)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log verbosity")


def registry_parser(prog: str, description: str, *, add: str, list_: str, remove: str):
    """A ``PROG add NAME ... | list [--json] | remove NAME`` parser; returns (parser, add, list, remove).

    The caller adds its own options to the subparsers; every one gets ``--config``/``--data-dir``.
    """
    p = ArgumentParser(prog=prog, description=description)
    sub = p.add_subparsers(dest="action", required=True)
    add_p = sub.add_parser("add", help=add)
    add_p.add_argument("name")
    lst = sub.add_parser("list", help=list_)
    lst.add_argument("--json", action="store_true")
    rm = sub.add_parser("remove", help=remove)
    rm.add_argument("name")
    for sp in (add_p, lst, rm):
        add_common_args(sp)
    return p, add_p, lst, rm


def model_from_options(model, error: type[Exception], **fields):
    """``model(**fields)`` from CLI options (None = not given); a validation error names the options."""
    from pydantic import ValidationError

    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            loc = "-".join(str(p) for p in e.get("loc", ())).replace("_", "-")
            msg = e.get("msg", "invalid value").removeprefix("Value error, ")
            parts.append(f"--{loc}: {msg}" if loc else msg)
        raise error("; ".join(parts)) from None


def configure_logging(level: str = "INFO") -> None:
    from telerad.logctx import install_context_filter

    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [%(ctx)s] %(message)s",
        stream=sys.stderr,
    )
    install_context_filter()
    # pynetdicom logs every C-STORE at INFO; keep its association-level news only when debugging
    if level != "DEBUG":
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        logging.getLogger("openjpeg").setLevel(logging.WARNING)  # logs every encoded tile at INFO
        logging.getLogger("huey").setLevel(logging.WARNING)  # logs every task at INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)  # lists its plugins at every start


def run_cli(prog: str, body: Callable[[], int | None]) -> int:
    """Run a subcommand body and turn every error into a message and exit code."""
    try:
        return int(body() or 0)
    except SystemExit as exc:  # argparse and explicit exits
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        return int(exc.code or 0)
    except TeleradError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except Exception as exc:  # last resort: a message, never a traceback
        log.debug("unexpected error in %s", prog, exc_info=True)
        print(f"{prog}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 70
