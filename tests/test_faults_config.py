"""Issue 28, config cases (points 5 and 6): a config that YAML parses but that would run
something other than what it says (a key given twice), or that crashed the reader (a
recursive alias, text that is not UTF-8), stops with one line naming the problem, before
any work and without touching any file."""

from __future__ import annotations

from click.testing import CliRunner

from empp_ff.cli import main


def _train_dry_run(config):
    result = CliRunner().invoke(main, ["train", str(config), "--dry-run"])
    lines = [line for line in result.output.strip().splitlines() if line]
    return result, lines


def test_a_section_given_twice_is_an_error_naming_it(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  lr: 0.01\nseed: 3\ntrain:\n  max_epochs: 5\n")
    before = config.read_bytes()
    result, lines = _train_dry_run(config)
    assert result.exit_code != 0
    assert len(lines) == 1 and "duplicate config key 'train'" in lines[0] and "lines 1 and 4" in lines[0]
    assert "Traceback" not in result.output and config.read_bytes() == before


def test_a_key_given_twice_inside_a_section_is_an_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  lr: 0.01\n  lr: 0.02\n")
    result, lines = _train_dry_run(config)
    assert result.exit_code != 0 and len(lines) == 1 and "duplicate config key 'lr'" in lines[0]


def test_a_recursive_alias_is_an_error_not_a_recursion_crash(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data: &loop\n  path: x.npz\n  more: *loop\n")
    result, lines = _train_dry_run(config)
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert "recursive YAML alias" in lines[0] and "Traceback" not in result.output


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_bytes("seed: 1\nrun_dir: runs/caf\xe9\n".encode("latin-1"))
    result, lines = _train_dry_run(config)
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert "not UTF-8" in lines[0] and str(config) in lines[0]


def test_a_yaml_syntax_error_is_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train: [1, 2\nseed: 1\n")
    result, lines = _train_dry_run(config)
    assert result.exit_code != 0 and len(lines) == 1 and "cannot parse" in lines[0], result.output
