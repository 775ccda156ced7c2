"""``empp-ff stability``: how long a model file keeps a molecule intact in NVT MD, and how
well it samples the reference's distances (``inference/stability.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from empp_ff.cli._outputs import refuse_clashes
from empp_ff.cli._support import check_device, stdout_for_json, stops_cleanly


@click.command("stability")
@click.argument("model", type=click.Path())
@click.argument("reference", type=click.Path())
@click.option("--temperature", default=500.0, show_default=True, type=float, help="NVT temperature (K).")
@click.option("--dt", "dt_fs", default=0.5, show_default=True, type=float, help="Time step (fs).")
@click.option("--time", "time_ps", default=50.0, show_default=True, type=float, help="Length of each run (ps).")
@click.option("--runs", default=5, show_default=True, type=int,
              help="Runs, each from another reference frame (evenly spaced) with its own seed.")
@click.option("--friction", default=0.01, show_default=True, type=float, help="Langevin friction (1/fs).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of run 1 (run k: seed, k).")
@click.option("--max-bond-deviation", default=0.5, show_default=True, type=float,
              help="A run collapses when a bond deviates from its reference mean by more than this (Å).")
@click.option("--check-every", default=20, show_default=True, type=int,
              help="Steps between collapse checks (each check's frame counts for h(r) while stable).")
@click.option("--format", "fmt", default=None, help="REFERENCE's data format (default: detected).")
@click.option("--plot", "plot", default="stability.png", show_default=True, type=click.Path(dir_okay=False),
              help="The figure: h(r) against the reference, bond deviation over time ('' for none).")
@click.option("--device", default=None, callback=check_device, help="cpu, cuda, cuda:1 ... (default: the model's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@stops_cleanly
def stability_cmd(model, reference, temperature, dt_fs, time_ps, runs, friction, seed, max_bond_deviation,
                  check_every, fmt, plot, device, as_json, no_progress):
    """MD stability of MODEL on the molecule of REFERENCE (any supported data file of it):
    Langevin NVT runs from reference frames; a run collapses when a bond deviates by more
    than --max-bond-deviation from its mean length in the reference. Reports the time each
    run stayed stable, their median, and the h(r) error of the stable part."""
    from empp_ff.inference.stability import StabilitySettings

    settings = StabilitySettings(temperature=temperature, dt_fs=dt_fs, time_ps=time_ps, runs=runs,
                                 friction=friction, seed=seed, max_bond_deviation=max_bond_deviation,
                                 check_every=check_every)
    try:
        settings.validate()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    plot_path = Path(plot) if plot else None
    refuse_clashes({"--plot": plot_path}, {"MODEL": model, "REFERENCE": reference})
    with stdout_for_json(as_json):
        report = _run(model, reference, fmt, settings, device, progress=not no_progress)
        trace = report.pop("_trace")
        if plot_path is not None:
            from empp_ff.inference.stability_plot import stability_plot

            stability_plot(trace, report, plot_path, title=f"{Path(model).name} on {Path(reference).name}")
            report["plot"] = str(plot_path)
    if as_json:
        click.echo(json.dumps(report))
        return
    times = ", ".join(f"{t:.2f}" for t in report["stable_ps"])
    click.echo(f"{report['runs']} runs of {time_ps:g} ps at {temperature:g} K: {report['n_collapsed']} collapsed; "
               f"stable for {times} ps (median {report['stable_ps_median']:.2f} ps); "
               f"h(r) MAE {report['hr_mae']:.4f} over the stable part ({report['wall_s']:.0f} s)")
    if plot_path is not None:
        click.echo(f"plot: {plot_path}")


def _run(model, reference, fmt, settings, device, progress):
    import torch

    from empp_ff.export import ModelFileError
    from empp_ff.export.model_file import default_device, load_model, read_metadata
    from empp_ff.inference.stability import reference_frames, run_stability

    try:
        numbers, frames = reference_frames(reference, fmt)
        metadata = read_metadata(model)  # checks the file before any of its code runs
        device = torch.device(device or default_device(metadata))
        loaded = load_model(model, metadata, device)
    except (FileNotFoundError, ModelFileError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.steps, desc="stability", leave=False, dynamic_ncols=True)
    try:
        report, trace = run_stability(loaded, metadata, numbers, frames, settings, device,
                                      progress=(lambda step: bar.update(1)) if bar is not None else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    return {"model": str(model), "reference": str(reference), **report, "_trace": trace}


def register(main: click.Group) -> None:
    main.add_command(stability_cmd)
