"""The local-stack commands of ``callboard``, from a checkout's ``devstack/`` when there is one.

``devstack`` (local Kafka and PostgreSQL, ``up``/``down``/``status``/``infra``, the demo) is
development tooling: the wheel and the image leave it out. An installation made from a
checkout (``make venv``, ``pip install -e .``) finds it beside ``services/``; anywhere else
each of those commands answers in one line where to run it instead of failing to import.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

DEV_COMMANDS = ("up", "down", "status", "infra", "demo")

ABSENT = (
    "error: `callboard {name}` is a development command and this installation has none: "
    "run it from a Callboard checkout (`git clone`, then `make venv` and `make {make}`)"
)


def checkout_root() -> Path | None:
    """The checkout that ``services`` was loaded from, if it holds ``devstack/``."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "devstack" / "__init__.py").is_file() else None


def register(app: typer.Typer) -> None:
    """Add the local-stack commands: devstack's own, or one line saying where they are."""
    root = checkout_root()
    if root is not None:
        # An editable install maps only the packaged names; devstack sits beside them.
        if str(root) not in sys.path:
            sys.path.append(str(root))
        importlib.import_module("devstack.cli").register(app)
        return
    for name in DEV_COMMANDS:
        _register_absent(app, name)


def _register_absent(app: typer.Typer, name: str) -> None:
    # `make up` is the documented way to `callboard up`; `infra` and `status` have no target.
    make = name if name in {"up", "down", "demo"} else "up"

    def absent() -> None:
        typer.echo(ABSENT.format(name=name, make=make), err=True)
        raise typer.Exit(1)

    absent.__doc__ = f"Development only: run `callboard {name}` from a Callboard checkout."
    # Any options a user adds (--state-dir, --seconds) get the same one line, not a usage error.
    app.command(
        name,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(absent)
