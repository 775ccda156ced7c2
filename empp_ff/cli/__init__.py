"""The ``empp-ff`` command line: thin click wrappers around the library.

Each area registers its commands in its own module; heavy imports (torch,
mace) happen inside the commands so ``empp-ff --help`` is instant.
"""

from __future__ import annotations

import click

from empp_ff import __version__
from empp_ff.cli._support import TranslatingGroup


@click.group(cls=TranslatingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="empp-ff")
def main():
    """Train, export and run EMPP-augmented MACE force fields."""


def _register():
    import importlib

    for module in ("train_cmds", "data_cmds", "export_cmds", "md_cmds", "stability_cmds", "lammps_cmds"):
        try:
            mod = importlib.import_module(f"empp_ff.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"empp_ff.cli.{module}":
                continue  # that area is not installed in this build
            raise
        mod.register(main)


_register()
