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
@click.option("--drop-nonfinite", is_flag=True,
              help="Drop frames holding NaN/inf values (default: such a frame is an error naming it).")
@click.option("--allow-missing-labels", is_flag=True,
              help="GEOM-style files: keep molecule groups that lack the labels the others carry.")
def convert_cmd(source, out, fmt, energy_key, forces_key, drop_nonfinite, allow_missing_labels):
    """Convert SOURCE into one ragged HDF5 store OUT (eV, Å, eV/Å)."""
    from empp_ff.data.conversion import convert
    from empp_ff.data.store import StructureStore

    try:
        path = convert(source, out, fmt=fmt, energy_key=energy_key, forces_key=forces_key, progress=True,
                       drop_nonfinite=drop_nonfinite, allow_missing_labels=allow_missing_labels)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    with StructureStore(path) as store:
        click.echo(f"wrote {path}: {len(store)} structures, species {[int(z) for z in store.species()]}, "
                   f"energy={store.has_energy}, forces={store.has_forces}")
        for key, what in (("n_dropped_nonfinite", "frame(s) with NaN/inf values dropped"),
                          ("n_missing_labels_kept", "structure(s) kept without the labels others carry")):
            if store.attrs.get(key):
                click.echo(f"{store.attrs[key]} {what}")


@data_group.command("info")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "fmt", default=None, help="Input format; detected when omitted.")
@click.option("--energy-key", default="energy", show_default=True)
@click.option("--forces-key", default="forces", show_default=True)
def info_cmd(path, fmt, energy_key, forces_key):
    """Summarise a data file (any supported format) as JSON."""
    from empp_ff.data.summary import summarise

    try:
        summary = summarise(path, fmt=fmt, energy_key=energy_key, forces_key=forces_key)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary, indent=2, default=str))


def register(group: click.Group) -> None:
    group.add_command(data_group)
