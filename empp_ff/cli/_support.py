"""CLI plumbing shared by the commands: ``--set`` parsing, error translation, --json output,
SIGTERM/SIGINT as a one-line message and exit status, the --device check."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import sys
from typing import Iterator, List

import click

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def _is_override(word: str) -> bool:
    return bool(_OVERRIDE.match(word)) and not os.path.exists(word)


def expand_set_args(args: List[str]) -> List[str]:
    """``--set a=1 b=2`` → ``--set a=1 --set b=2``: every KEY=VALUE word that follows a
    ``--set`` value is one more override (a word that is not KEY=VALUE, e.g. the
    config file, or an option ends the run)."""
    out: List[str] = []
    state = None  # None | "value" (next word is --set's value) | "more" (KEY=VALUE words may follow)
    for k, word in enumerate(args):
        if word == "--":
            out.extend(args[k:])
            break
        if state == "value":
            out.append(word)
            state = "more"
        elif word == "--set":
            out.append(word)
            state = "value"
        elif word.startswith("--set="):
            out.append(word)
            state = "more"
        elif state == "more" and _is_override(word):
            out += ["--set", word]
        else:
            out.append(word)
            state = None
    return out


class OverridesCommand(click.Command):
    """A command whose ``--set`` option takes one or more KEY=VALUE words."""

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        return super().parse_args(ctx, expand_set_args(list(args)))


def describe_os_error(exc: OSError) -> str:
    """What went wrong with which file, in words (no traceback)."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device while writing{where}: free some space or write elsewhere"
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing{where}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied:{where} cannot be written (read-only directory or file system?)"
    return f"{exc.strerror or exc}:{where}" if where else str(exc.strerror or exc)


class TranslatingGroup(click.Group):
    """The top-level group: file-system errors of any command become one clear line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            raise click.ClickException(describe_os_error(exc)) from exc


@contextlib.contextmanager
def stdout_for_json(enabled: bool) -> Iterator[None]:
    """With ``--json``, anything a library prints while the command works goes to
    stderr, so stdout carries exactly one JSON document."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def stopped_error(exc: KeyboardInterrupt) -> click.ClickException:
    """A command stopped by SIGTERM/SIGINT (``empp_ff._signals``): its one-line message (where it
    stopped, what it left) and the exit status 128 + the signal (143, 130)."""
    from empp_ff._signals import exit_status

    error = click.ClickException(str(exc) or "interrupted")
    error.exit_code = exit_status(exc)
    return error


def stops_cleanly(command):
    """Decorate a command's function (below its click options): SIGTERM and SIGINT stop it with
    :func:`stopped_error` after its files are in place or cleaned up."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from empp_ff._signals import stop_on_signals

        with stop_on_signals():
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt as exc:
                raise stopped_error(exc) from exc

    return wrapper


_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")


def check_device(ctx: click.Context, param: click.Parameter, value, allow_auto: bool = False):
    """click callback for --device: cpu, cuda, cuda:N (or auto where the command has it); anything else
    is a one-line error listing the devices valid here."""
    if value is None or (allow_auto and value == "auto") or _DEVICE.match(value):
        return value
    import torch

    valid = ["auto"] if allow_auto else []
    valid.append("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    valid += ["cuda"] + [f"cuda:{i}" for i in range(count)] if count else []
    cuda = "" if count else " (no CUDA device visible here; cuda, cuda:N on a GPU machine)"
    raise click.ClickException(f"--device {value!r} is not a device: use {', '.join(valid)}{cuda}")


check_device_or_auto = functools.partial(check_device, allow_auto=True)
