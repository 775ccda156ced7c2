"""``empp-ff data ...``: convert datasets into the training store, inspect them."""

from __future__ import annotations

import json

import click


@click.group("data")
def data_group():
    """Dataset tools."""


@data_group.command("convert")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", default=None,
              help="Input format (md17, rmd17, extxyz, asedb, geom_h5, geom_msgpack, store); detected when omitted.")
@click.option("--energy-key", default="energy", show_default=True)
@click.option("--forces-key", default="forces", show_default=True)
def convert_cmd(source, out, fmt, energy_key, forces_key):
    """Convert SOURCE into one ragged HDF5 store OUT (eV, Å, eV/Å)."""
    from empp_ff.data.conversion import convert
    from empp_ff.data.store import StructureStore

    try:
        path = convert(source, out, fmt=fmt, energy_key=energy_key, forces_key=forces_key, progress=True)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    with StructureStore(path) as store:
        click.echo(f"wrote {path}: {len(store)} structures, species {[int(z) for z in store.species()]}, "
                   f"energy={store.has_energy}, forces={store.has_forces}")


@data_group.command("info")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def info_cmd(path):
    """Summarise a data file (any supported format)."""
    from empp_ff.data.readers import detect_format
    from empp_ff.data.store import StructureStore

    fmt = detect_format(path)
    if fmt != "store":
        raise click.ClickException(f"{path} is in format '{fmt}'; convert it with 'empp-ff data convert' first")
    with StructureStore(path) as store:
        attrs = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in store.attrs.items()}
        click.echo(json.dumps({"n_structures": len(store), "species": [int(z) for z in store.species()], **attrs},
                              indent=2, default=str))


def register(group: click.Group) -> None:
    group.add_command(data_group)
