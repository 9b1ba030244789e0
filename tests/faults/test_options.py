"""Bad numeric options are refused up front by argparse (exit 2, naming the option), before any work;
and the CLI's clean exit is kept for the user's errors only, so a genuine bug shows its traceback."""
from __future__ import annotations

import pytest

from pipeline.errors import UsageError

from .conftest import run_cli


def _argv(command: str, option: str, value: str, tmp_path) -> list[str]:
    base = {
        "synth": ["synth", "--out", tmp_path / "cohort"],
        "run": ["run", "--data", tmp_path / "data", "--out", tmp_path / "out"],
        "score": ["score", "--run", tmp_path / "run", "--data", tmp_path / "data", "--out", tmp_path / "out"],
        "compare": ["compare", "--data", tmp_path / "data", "--out", tmp_path / "out"],
        "score --model": ["score", "--model", tmp_path / "m.keras", "--data", tmp_path / "data",
                          "--out", tmp_path / "out"],
        "import-scores": ["import-scores", "--data", tmp_path / "data", "--scores", tmp_path / "s.csv",
                          "--out", tmp_path / "out"],
        "compare-runs": ["compare-runs", tmp_path / "a", tmp_path / "b"],
        "reviews add": ["reviews", "add", "--run", tmp_path / "out", "--patient", "1", "--x", "1", "--y", "1",
                        "--verdict", "agree", "--reviewer", "a"],
    }[command]
    return [*base, option, value]


BAD = [
    ("synth", "--patients", "0"), ("synth", "--patients", "-3"), ("synth", "--seed", "-1"),
    ("run", "--epochs", "0"), ("run", "--epochs", "-1"), ("run", "--epochs", "1.5"), ("run", "--epochs", "many"),
    ("run", "--patience", "-1"), ("run", "--width", "0"), ("run", "--width", "-5"),
    ("run", "--batch-size", "0"), ("run", "--workers", "-1"), ("run", "--workers", "0"), ("run", "--seed", "-2"),
    ("run", "--learning-rate", "0"), ("run", "--learning-rate", "-0.001"), ("run", "--learning-rate", "nan"),
    ("run", "--stain-sigma", "-0.1"),
    ("score", "--workers", "0"), ("score", "--workers", "-1"),
    ("compare", "--minutes", "0"), ("compare", "--minutes", "-1"), ("compare", "--minutes", "nan"),
    ("compare", "--minutes", "inf"), ("compare", "--epochs", "0"), ("compare", "--seed", "-1"),
    ("compare", "--width", "0"),
    ("score --model", "--seed", "-1"), ("score --model", "--seed", "1.5"), ("import-scores", "--seed", "-1"),
    ("import-scores", "--seed", "x"), ("compare-runs", "--seed", "-1"), ("compare-runs", "--seed", "0.5"),
    ("reviews add", "--x", "-1"), ("reviews add", "--y", "-50"), ("reviews add", "--x", "2.5"),
    # float() reads full-width and other Unicode digits: every numeric option takes ASCII digits only.
    ("run", "--epochs", "\uff19"), ("run", "--learning-rate", "\uff11e-3"), ("score", "--workers", "\uff12"),
    ("compare", "--minutes", "\uff15"), ("reviews add", "--x", "\uff11"), ("import-scores", "--seed", "\u0663"),
]


@pytest.mark.parametrize("command,option,value", BAD)
def test_bad_numbers_are_refused_before_any_work(command, option, value, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    code, out, err = run_cli(capsys, *_argv(command, option, value, tmp_path))
    assert code == 2
    assert f"argument {option}: must be " in err and repr(value) in err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists() and not (tmp_path / "cohort").exists()  # nothing was started


@pytest.mark.parametrize("command,option,value,dest,expected", [
    ("run", "--epochs", "1", "epochs", 1), ("run", "--patience", "0", "patience", 0), ("run", "--seed", "0", "seed", 0),
    ("run", "--width", "8", "width", 8), ("run", "--learning-rate", "1e-4", "learning_rate", 1e-4),
    ("run", "--stain-sigma", "0", "stain_sigma", 0.0), ("compare", "--minutes", "0.5", "minutes", 0.5),
    ("score --model", "--seed", "0", "seed", 0), ("import-scores", "--seed", "3", "seed", 3),
    ("compare-runs", "--seed", "0", "seed", 0), ("reviews add", "--x", "0", "x", 0)])
def test_edge_values_that_make_sense_are_accepted(command, option, value, dest, expected, tmp_path):
    from pipeline.cli import build_parser

    args = build_parser().parse_args([str(a) for a in _argv(command, option, value, tmp_path)])
    assert getattr(args, dest) == expected


def test_the_seed_defaults_are_the_training_default(tmp_path):
    # One default for the patient split's seed: TrainConfig's, not a number typed again in each command.
    from model.config import TrainConfig
    from pipeline import import_scores, score
    from pipeline.cli import build_parser

    args = build_parser().parse_args([str(a) for a in _argv("import-scores", "--name", "m", tmp_path)])
    assert args.seed == import_scores.DEFAULT_SEED == score.DEFAULT_SEED == TrainConfig().seed


def test_the_python_api_checks_the_same_settings_before_touching_the_folder(tiny_cohort, tmp_path):
    from model.config import ConfigError, TrainConfig
    from pipeline.run import run_pipeline

    # Training settings are checked when the TrainConfig is made, with the option's name as the CLI spells it.
    for bad, option in (({"epochs": 0}, "--epochs"), ({"batch_size": 0}, "--batch-size"), ({"width": 0}, "--width"),
                        ({"patience": -1}, "--patience"), ({"epochs": 1.5}, "--epochs"),
                        ({"learning_rate": 0.0}, "--learning-rate"), ({"arch": "resnet"}, "unknown architecture")):
        with pytest.raises(ConfigError, match=option):
            TrainConfig(**bad)
    with pytest.raises(UsageError, match="workers"):
        run_pipeline(tiny_cohort, tmp_path / "out", workers=-1)
    with pytest.raises(TypeError, match="TrainConfig"):
        run_pipeline(tiny_cohort, tmp_path / "out", {"epochs": 2})
    assert not (tmp_path / "out").exists()


def test_a_genuine_bug_is_not_turned_into_a_clean_exit(monkeypatch, tmp_path, capsys):
    import pipeline.synth

    def broken(*args, **kwargs):
        raise ValueError("a bug inside the pipeline")

    monkeypatch.setattr(pipeline.synth, "generate_cohort", broken)
    with pytest.raises(ValueError, match="a bug inside the pipeline"):
        run_cli(capsys, "synth", "--out", tmp_path / "c")


def test_the_users_errors_still_exit_cleanly(monkeypatch, tmp_path, capsys):
    import pipeline.synth

    def refused(*args, **kwargs):
        raise UsageError("--out is not yours; pass --out a new folder")

    monkeypatch.setattr(pipeline.synth, "generate_cohort", refused)
    code, _, err = run_cli(capsys, "synth", "--out", tmp_path / "c")
    assert code == 2 and err.strip() == "error: --out is not yours; pass --out a new folder"
