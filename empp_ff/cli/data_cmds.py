"""``empp-ff data ...``: convert datasets into the training store, inspect them."""

from __future__ import annotations

import json

import click

from empp_ff.cli._outputs import refuse_clashes
from empp_ff.cli._support import stops_cleanly


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

    refuse_clashes({"OUT": out}, {"SOURCE": source})
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


@data_group.command("corpus")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--seeds", "seeds_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Seed SMILES: a text file (one per line) or a GEOM-style HDF5 file (groups' 'smiles').")
@click.option("--molecules", "n_molecules", default=3000, show_default=True, type=int,
              help="How many molecules (seeds, their BRICS fragments and recombinations).")
@click.option("--conformers", default=2, show_default=True, type=int, help="ETKDG conformers per molecule.")
@click.option("--samples", default=2, show_default=True, type=int,
              help="Thermal normal-mode samples per conformer; 0 stores the MMFF94 minima.")
@click.option("--temperature", default=500.0, show_default=True, help="Sampling temperature (K).")
@click.option("--max-heavy-atoms", default=24, show_default=True)
@click.option("--exclude", multiple=True, help="A SMILES to keep out (repeatable), compared canonically.")
@click.option("--exclude-from", type=click.Path(exists=True, dir_okay=False),
              help="A file of SMILES to keep out (one per line).")
@click.option("--seed", default=0, show_default=True)
@stops_cleanly
def corpus_cmd(out, seeds_path, n_molecules, conformers, samples, temperature, max_heavy_atoms, exclude,
               exclude_from, seed):
    """Build an unlabelled corpus OUT (a store) of drug-like structures for EMPP pre-training."""
    refuse_clashes({"OUT": out}, {"--seeds": seeds_path, "--exclude-from": exclude_from})
    try:
        from empp_ff.data.corpus.build import build_corpus, read_seed_smiles
        from empp_ff.data.corpus.conformers import ConformerSettings
        from empp_ff.data.corpus.molecules import MoleculeFilter

        excluded = list(exclude) + (read_seed_smiles(exclude_from) if exclude_from else [])
        settings = ConformerSettings(n_conformers=conformers, samples_per_conformer=samples,
                                     temperature_k=temperature)
        prov = build_corpus(read_seed_smiles(seeds_path), out, n_molecules, settings,
                            MoleculeFilter(max_heavy_atoms=max_heavy_atoms), exclude=excluded, seed=seed,
                            progress=True, warn=lambda msg: click.echo(f"Warning: {msg}", err=True))
    except (ImportError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    counts = prov["counts"]
    click.echo(f"wrote {out}: {counts['structures']} structures of {counts['molecules']} molecules "
               f"({len(counts['skipped'])} could not be embedded or lack MMFF94 parameters), "
               f"{len(prov['excluded_canonical_smiles'])} SMILES kept out, {prov['wall_s']:.0f} s")


def register(group: click.Group) -> None:
    group.add_command(data_group)
