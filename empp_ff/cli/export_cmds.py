"""``empp-ff export`` and ``empp-ff info``: write and inspect model files."""

from __future__ import annotations

import json

import click

from empp_ff._dtypes import DTYPE_NAMES


@click.command("export")
@click.argument("source", type=click.Path(exists=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write (e.g. model.pt).")
@click.option("--dtype", type=click.Choice(DTYPE_NAMES), default=None,
              help="Model precision (default: the training dtype).")
@click.option("--ema/--no-ema", default=True, show_default=True,
              help="Use the EMA weights when the checkpoint has them.")
def export_cmd(source, output, dtype, ema):
    """Export a run directory or checkpoint SOURCE to a TorchScript model file."""
    from empp_ff.export import export_model, read_metadata

    try:
        path = export_model(source, output, dtype=dtype, use_ema=ema)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    meta = read_metadata(path)
    click.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {meta['dtype']}, "
        f"elements {' '.join(meta['elements'])}, r_max {meta['r_max']} Å, "
        f"{'EMA' if meta['used_ema'] else 'raw'} weights"
    )


def _format_metadata(meta: dict) -> str:
    lines = []

    def row(key, value):
        lines.append(f"  {key:<22} {value}")

    lines.append("empp-ff model file")
    row("format version", meta.get("format_version"))
    row("written by", f"empp-ff {meta.get('empp_ff_version')} on {meta.get('created')}")
    row("elements", " ".join(f"{s}({z})" for s, z in zip(meta["elements"], meta["species"])))
    row("r_max", f"{meta['r_max']} Å")
    row("interactions", meta["num_interactions"])
    halo = meta.get("halo")
    if halo:
        row("LAMMPS ghost cutoff", f"{halo['ghost_cutoff']} Å in halo mode (halo_version {halo['version']}, "
            f"{halo['comm_dims']} numbers/atom exchanged), {meta['ghost_cutoff']} Å with halo no")
    else:
        row("LAMMPS ghost cutoff", f"{meta['ghost_cutoff']} Å (no layer-wise entry points: re-export for halo mode)")
    row("dtype", meta["dtype"])
    units = meta.get("units", {})
    row("units", ", ".join(f"{k} {v}" for k, v in units.items()))
    e0 = meta.get("atomic_energies", {})
    row("E0s (eV)", ", ".join(f"{k} {v:.4f}" for k, v in e0.items()))
    spec = meta.get("backbone_spec", {})
    if spec:
        row("architecture", f"MACE {spec.get('num_channels')}ch L={spec.get('max_L')} "
            f"correlation {spec.get('correlation')} max_ell {spec.get('max_ell')}")
    row("weights", ("EMA" if meta.get("used_ema") else "raw") + (
        f", epoch {meta['epoch']}" if meta.get("epoch") is not None else ""))
    row("source checkpoint", meta.get("source_checkpoint"))
    metrics = meta.get("validation_metrics") or {}
    if metrics:
        lines.append("  validation metrics")
        for k, v in metrics.items():
            lines.append(f"    {k:<20} {v:.6g}" if isinstance(v, float) else f"    {k:<20} {v}")
    versions = meta.get("versions", {})
    row("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    return "\n".join(lines)


@click.command("info")
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the raw metadata.json.")
def info_cmd(model, as_json):
    """Print the metadata of a model file (torch only; the model is not run)."""
    from empp_ff.export import ModelFileError, read_metadata

    try:
        meta = read_metadata(model)
    except (FileNotFoundError, ModelFileError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(meta, indent=2))
    else:
        click.echo(_format_metadata(meta))


def register(group):
    group.add_command(export_cmd)
    group.add_command(info_cmd)
