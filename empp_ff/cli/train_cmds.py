"""``empp-ff train`` and ``empp-ff eval``."""

from __future__ import annotations

import json

import click

from empp_ff.cli._support import OverridesCommand, check_device_or_auto, stdout_for_json


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


@click.command("train", cls=OverridesCommand)
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE [KEY=VALUE ...]",
              help="Override config keys (dotted, e.g. --set train.max_epochs=10 train.lr=5e-3); repeatable.")
@click.option("--dry-run", is_flag=True, help="Validate and print the resolved config, then stop.")
def train_cmd(config, overrides, dry_run):
    """Train a force field. Without CONFIG, trains the bundled aspirin demo.

    Re-running the same command on an interrupted run directory resumes it.
    """
    from empp_ff.train.config import ConfigError, load_config

    try:
        cfg = load_config(config, list(overrides))
    except ConfigError as exc:
        _fail(exc)
    if dry_run:
        import yaml

        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return
    from empp_ff.train.rundir import RunDirBusy
    from empp_ff.train.trainer import run_training

    try:
        run_training(cfg, log=lambda msg: click.echo(msg, err=False))
    except (ConfigError, FileNotFoundError, FloatingPointError, RunDirBusy) as exc:
        _fail(exc)
    except ValueError as exc:  # data problems found while reading
        _fail(exc)


@click.command("eval")
@click.argument("target", type=click.Path(exists=True))
@click.argument("data", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--split", type=click.Choice(["auto", "all", "train", "val", "test"]), default="auto",
              show_default=True,
              help="Which structures of DATA to use; 'auto' is the run's test split when DATA is the "
                   "run's training data, else all.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--device", default="auto", show_default=True, callback=check_device_or_auto,
              help="auto, cpu, cuda, cuda:1 ...")
@click.option("--no-ema", is_flag=True, help="Use raw weights instead of the EMA weights.")
def eval_cmd(target, data, split, as_json, batch_size, device, no_ema):
    """Energy and force errors of a checkpoint or run directory on DATA."""
    from empp_ff.train.evaluation_cli import run_eval

    try:
        with stdout_for_json(as_json):
            result = run_eval(target, data, split=split, batch_size=batch_size, device=device,
                              use_ema=not no_ema, progress=not as_json)
    except (FileNotFoundError, ValueError) as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        from empp_ff.train.evaluate import format_error_table

        click.echo(format_error_table(result, result.get("per_element_forces_mae_mev_per_a"),
                                      title=f"{result['checkpoint']} on {result['data']} ({result['split']})"))


def register(group: click.Group) -> None:
    group.add_command(train_cmd)
    group.add_command(eval_cmd)
