"""``empp-ff md`` and ``empp-ff opt``: run an exported model with ASE."""

from __future__ import annotations

import json

import click

from empp_ff.cli._outputs import refuse_clashes
from empp_ff.cli._support import check_device, stdout_for_json, stopped_error, stops_cleanly
from empp_ff.inference.guard import DEFAULT_MAX_BOND_STRETCH


def _calculator(model, device, min_distance, max_bond_stretch):
    from empp_ff.export import ModelFileError
    from empp_ff.inference.calculator import EMPPCalculator

    try:
        return EMPPCalculator(model, device=device, min_distance=min_distance or None,
                              max_bond_stretch=max_bond_stretch or None)
    except (FileNotFoundError, ModelFileError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _guard_options(max_bond_stretch: float):
    """The instability guard's thresholds (0 switches a check off)."""
    from empp_ff.inference.guard import DEFAULT_MIN_DISTANCE

    def decorate(command):
        command = click.option(
            "--max-bond-stretch", default=max_bond_stretch, show_default=True, type=click.FloatRange(min=0),
            help="Molecules: stop when a bond of the initial structure changes by more than this (Å); 0: off.",
        )(command)
        return click.option(
            "--min-distance", default=DEFAULT_MIN_DISTANCE, show_default=True, type=click.FloatRange(min=0),
            help="Stop when two atoms come closer than this (Å); 0: off.",
        )(command)

    return decorate


def _stopped(exc: BaseException) -> click.ClickException:
    """An instability, SIGTERM or Ctrl-C; the driver's message says where and what the run left."""
    if isinstance(exc, KeyboardInterrupt):
        return stopped_error(exc)
    return click.ClickException(str(exc) or "interrupted")


# What happens to an existing --out / --log file, for the options' help.
_REPLACED = ("replaced when the run ends or stops (a stopped run keeps what it wrote); "
             "left as it is when the run is refused")


def _structure(path):
    from empp_ff.inference.md import read_structure

    try:
        return read_structure(path)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("md")
@click.argument("model", type=click.Path())
@click.argument("structure", type=click.Path())
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option("--dt", "dt_fs", default=0.5, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Time step (fs).")
@click.option("--temperature", default=300.0, show_default=True, help="Initial / target temperature (K).")
@click.option("--ensemble", type=click.Choice(["nve", "langevin", "nvt", "npt"]), default="nve",
              show_default=True)
@click.option("--friction", default=0.01, show_default=True, help="Langevin friction (1/fs).")
@click.option("--pressure", "pressure_bar", default=1.0, show_default=True, help="NPT pressure (bar).")
@click.option("--seed", default=0, show_default=True, help="Seed for velocities and Langevin noise.")
@click.option("--out", "out", default="md.traj", show_default=True, type=click.Path(dir_okay=False),
              help=f"Trajectory: .traj (ASE) or .xyz/.extxyz (extended XYZ). An existing file is {_REPLACED}.")
@click.option("--interval", default=10, show_default=True, type=click.IntRange(min=1),
              help="Write/log every N steps.")
@click.option("--log", "log", default=None, type=click.Path(dir_okay=False),
              help=f"MD log file; an existing one is {_REPLACED}.")
@click.option("--device", default=None, callback=check_device,
              help="cpu, cuda, cuda:1 ... (default: cuda if available).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_guard_options(max_bond_stretch=DEFAULT_MAX_BOND_STRETCH)  # Fu et al. 2022 ("Forces are not enough")
@stops_cleanly
def md_cmd(model, structure, steps, dt_fs, temperature, ensemble, friction, pressure_bar, seed, out,
           interval, log, device, no_progress, min_distance, max_bond_stretch):
    """Molecular dynamics of STRUCTURE (any ase.io.read format) with MODEL."""
    from empp_ff.inference.guard import InstabilityError
    from empp_ff.inference.md import run_md

    refuse_clashes({"--out": out, "--log": log}, {"MODEL": model, "STRUCTURE": structure})
    atoms = _structure(structure)
    calc = _calculator(model, device, min_distance, max_bond_stretch)
    try:
        result = run_md(atoms, calc, steps=steps, dt_fs=dt_fs, temperature=temperature,
                        ensemble=ensemble, friction=friction, seed=seed, trajectory=out,
                        traj_interval=interval, logfile=log, log_interval=interval,
                        progress=not no_progress, pressure_bar=pressure_bar)
    except (InstabilityError, KeyboardInterrupt) as exc:
        raise _stopped(exc) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    s = result.summary()
    click.echo(f"{steps} steps of {ensemble} in {s['wall_s']:.1f} s "
               f"({s['steps_per_s'] or 0:.1f} steps/s), mean T {s['mean_temperature_K']:.1f} K; "
               f"trajectory: {out}")
    if ensemble == "nve" and result.drift_ev_per_atom_per_ps is not None:
        click.echo(f"NVE energy drift: {result.drift_ev_per_atom_per_ps:.3e} eV/atom/ps "
                   f"(max |E - <E>| {result.max_abs_fluctuation_ev_per_atom:.3e} eV/atom)")
    if log:
        click.echo(f"log: {log}")


@click.command("opt")
@click.argument("model", type=click.Path())
@click.argument("structure", type=click.Path())
@click.option("--fmax", default=0.01, show_default=True, help="Force convergence threshold (eV/Å).")
@click.option("--optimizer", type=click.Choice(["BFGS", "FIRE", "LBFGS"], case_sensitive=False),
              default="BFGS", show_default=True)
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option("--out", "out", default="opt.xyz", show_default=True, type=click.Path(dir_okay=False),
              help="Final structure (any ase.io.write format; .traj keeps the whole path). An existing file "
                   f"is {_REPLACED}.")
@click.option("--device", default=None, callback=check_device,
              help="cpu, cuda, cuda:1 ... (default: cuda if available).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_guard_options(max_bond_stretch=0.0)  # off: a relaxation may legitimately move far from its start
@stops_cleanly
def opt_cmd(model, structure, fmax, optimizer, steps, out, device, as_json, min_distance, max_bond_stretch):
    """Relax STRUCTURE with MODEL until max force < FMAX."""
    from dataclasses import asdict

    from empp_ff.inference.guard import InstabilityError
    from empp_ff.inference.md import optimize

    refuse_clashes({"--out": out}, {"MODEL": model, "STRUCTURE": structure})
    atoms = _structure(structure)
    calc = _calculator(model, device, min_distance, max_bond_stretch)
    try:
        with stdout_for_json(as_json):
            result = optimize(atoms, calc, fmax=fmax, optimizer=optimizer, steps=steps,
                              trajectory=out, logfile=None if as_json else "-")
    except (InstabilityError, KeyboardInterrupt) as exc:
        raise _stopped(exc) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(asdict(result)))
    else:
        status = "converged" if result.converged else "NOT converged"
        click.echo(f"{status} in {result.steps} steps: max force {result.final_fmax:.4f} eV/Å, "
                   f"energy {result.initial_energy:.4f} -> {result.final_energy:.4f} eV; wrote {out}")
    if not result.converged:
        raise SystemExit(2)


def register(group):
    group.add_command(md_cmd)
    group.add_command(opt_cmd)
