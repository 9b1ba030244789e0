"""The command line: one parser built from each stage's own options, TensorFlow imported only when needed."""
from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from model.config import TrainConfig
from pipeline import cli

ROOT = Path(__file__).resolve().parent.parent

_IMPORTS_AFTER = """
import sys
from pipeline import cli
try:
    cli.main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "tf_keras_vis"))
print("HEAVY:" + ",".join(heavy))
"""


@pytest.mark.parametrize("argv", [["--help"], ["synth", "--help"], ["run", "--help"], ["score", "--help"],
                                  ["compare", "--help"], ["run", "--data", "x", "--epochs", "0"], ["reviews", "--help"],
                                  ["reviews", "export", "--help"], ["export-geojson", "--help"]])
def test_help_and_option_checks_import_no_tensorflow(argv):
    proc = subprocess.run([sys.executable, "-c", _IMPORTS_AFTER.format(argv=argv)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    heavy = proc.stdout.rsplit("HEAVY:", 1)[1].strip()
    assert heavy == "", f"{argv} imported {heavy}"


def test_python_m_pipeline_is_the_same_command_line():
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0 and all(name in proc.stdout for name in cli.COMMANDS)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["idc"] == "pipeline.cli:main"


def test_each_command_lives_with_its_stage():
    for name, (module, _) in cli.COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run_command), name
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == list(cli.COMMANDS)


def _dests(command: str) -> set[str]:
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    return {a.dest for a in sub.choices[command]._actions}


def test_training_options_are_the_train_configs():
    cli_settings = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)}
    assert cli_settings <= _dests("run")
    assert cli_settings - {"arch"} <= _dests("compare")  # compare takes --archs instead
    args = cli.build_parser().parse_args(["run", "--data", "d", "--arch", "plain", "--learning-rate", "0.01",
                                          "--stain-sigma", "0", "--epochs", "3", "--seed", "4"])
    config = TrainConfig.from_cli(args)
    assert config == TrainConfig(arch="plain", learning_rate=0.01, stain_sigma=0.0, epochs=3, seed=4)
    assert config.width is None  # plain has no width
    # The defaults are the dataclass's, so the default run's fingerprint (and model) is today's.
    assert TrainConfig.from_cli(cli.build_parser().parse_args(["run", "--data", "d"])) == TrainConfig()


def test_a_config_error_is_a_users_error(monkeypatch, capsys):
    from model.config import ConfigError

    import pipeline.run

    def refuse(args):
        raise ConfigError("--width must be at least 1, got 0")

    monkeypatch.setattr(pipeline.run, "run_command", refuse)
    assert cli.main(["run", "--data", "d"]) == 2
    assert capsys.readouterr().err.strip() == "error: --width must be at least 1, got 0"
