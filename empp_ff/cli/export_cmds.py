"""``empp-ff export`` and ``empp-ff info``: write and inspect model files."""

from __future__ import annotations

import json

import click

from empp_ff._dtypes import DTYPE_NAMES
from empp_ff.cli._outputs import refuse_clashes
from empp_ff.cli._support import stdout_for_json, stops_cleanly


def _checkpoints_folder(source):
    """The run's checkpoints folder that SOURCE (a run directory or one of its checkpoints) is read from."""
    from pathlib import Path

    source = Path(source)
    if source.is_dir():
        return source / "checkpoints"
    return source.parent if source.parent.name == "checkpoints" else None


@click.command("export")
@click.argument("source", type=click.Path(exists=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Model file to write: model.pt (TorchScript) or model.pt2 (AOTInductor package).")
@click.option("--format", "fmt", type=click.Choice(["torchscript", "aotinductor"]), default=None,
              help="File format (default: by suffix, .pt2 = aotinductor, else torchscript).")
@click.option("--dtype", type=click.Choice(DTYPE_NAMES), default=None,
              help="Model precision (default: the training dtype).")
@click.option("--ema/--no-ema", default=True, show_default=True,
              help="Use the EMA weights when the checkpoint has them.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="aotinductor: the device to compile for (default: cuda when available, else cpu).")
@click.option("--cpu-target", type=click.Choice(["portable", "native"]), default="portable", show_default=True,
              help="aotinductor on CPU: portable (x86-64-v3, any AVX2 CPU) or native (this CPU only).")
@stops_cleanly
def export_cmd(source, output, fmt, dtype, ema, device, cpu_target):
    """Export a run directory or checkpoint SOURCE to a model file (TorchScript or
    an AOTInductor package of compiled kernels; see README "Model file formats")."""
    refuse_clashes({"-o": output}, {"SOURCE": source}, {"run's checkpoints folder": _checkpoints_folder(source)})
    from empp_ff.export import export_model, read_metadata
    from empp_ff.export.aoti import CompileError
    from empp_ff.export.exporter import resolve_format

    try:
        fmt = resolve_format(output, fmt)
        if fmt == "aotinductor":
            click.echo(f"compiling {output} with AOTInductor (this takes minutes)...", err=True)
        path = export_model(source, output, dtype=dtype, use_ema=ema, format=fmt, device=device,
                            cpu_target=cpu_target, log=lambda s: click.echo(s, err=True))
    except (FileNotFoundError, ValueError, CompileError) as exc:
        raise click.ClickException(str(exc)) from exc
    from empp_ff.export.trust import own_output

    with own_output(path) as note:
        meta = read_metadata(path)
    compiled = meta.get("compiled")
    target = f", compiled for {compiled['device']} ({compiled['cpu_target'] or 'gpu'})" if compiled else ""
    click.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {meta['format']}{target}): {meta['dtype']}, "
        f"elements {' '.join(meta['elements'])}, r_max {meta['r_max']} Å, "
        f"{'EMA' if meta['used_ema'] else 'raw'} weights"
    )
    if note:
        click.echo(f"note: {note}", err=True)


def _format_metadata(meta: dict) -> str:
    lines = []

    def row(key, value):
        lines.append(f"  {key:<22} {value}")

    lines.append("empp-ff model file")
    row("format", f"{meta.get('format', 'torchscript')} (format version {meta.get('format_version')})")
    row("checksum", f"{meta['checksum']} (verified: not changed by accident since export; not a signature, "
        "anyone can recompute it)" if meta.get("checksum") else
        "none recorded (written before empp-ff recorded checksums)")
    row("code", "native code compiled into a shared library: it runs when the package is loaded, and no "
        "check can see what it does; load packages only from people you trust"
        if meta.get("format") == "aotinductor" else
        "TorchScript, scanned: it calls only operations empp-ff exports emit (model files are programs: "
        "see 'Trusting model files' in the README)")
    for line in _compiled_rows(meta):
        row(*line)
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
        row("architecture", _architecture(meta.get("backbone", "mace"), spec))
    row("weights", ("EMA" if meta.get("used_ema") else "raw") + (
        f", epoch {meta['epoch']}" if meta.get("epoch") is not None else ""))
    row("source checkpoint", meta.get("source_checkpoint"))
    metrics = meta.get("validation_metrics") or {}
    # The record is the checkpoint epoch's metrics row: list validation and training values apart.
    for title, keep in (("validation metrics", lambda k: k.startswith("val_")),
                        ("training metrics (same epoch)", lambda k: k.startswith(("train_", "empp_")))):
        chosen = {k: v for k, v in metrics.items() if keep(k)}
        if chosen:
            lines.append(f"  {title}")
            for k, v in chosen.items():
                lines.append(f"    {k:<26} {v:.6g}" if isinstance(v, float) else f"    {k:<26} {v}")
    versions = meta.get("versions", {})
    row("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    return "\n".join(lines)


def _architecture(backbone: str, spec: dict) -> str:
    """One line naming the backbone (files written before the field: MACE) and its size (the
    backbone's own summary; a backbone this installation does not know: its name and width)."""
    from empp_ff.model.backbone import backbone_names, description

    if backbone in backbone_names():
        return description(backbone).describe(spec)
    return f"{backbone} {spec.get('num_channels')}ch"


def _compiled_rows(meta: dict) -> list:
    compiled = meta.get("compiled")
    if not compiled:
        return []
    from empp_ff.export.compiled import compatibility_problems

    cpu = f", cpu target {compiled['cpu_target']}" if compiled.get("cpu_target") else ""
    problems = compatibility_problems(meta, compiled.get("device", "cpu"))
    return [
        ("compiled for", f"{compiled.get('device')} ({compiled.get('machine')}{cpu}), torch {compiled.get('torch')}"),
        ("compile time", f"{compiled.get('compile_seconds')} s"),
        ("runs here", "yes" if not problems else "no: " + "; ".join(problems)),
    ]


@click.command("info")
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the raw metadata.json.")
def info_cmd(model, as_json):
    """Print the metadata of a model file (torch only; the model is not run)."""
    from empp_ff.export import ModelFileError, read_metadata

    try:
        with stdout_for_json(as_json):
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
