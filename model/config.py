"""The training configuration: one frozen dataclass, the single source of every training setting.

The command line (``add_cli_options`` / ``from_cli``), the training stage's fingerprint
(``fingerprint_settings``), the fit loop (model.fit), run.json (``as_dict``) and the bench scripts
all read a ``TrainConfig``; a new setting is one new field here, with its help text and its check.
Importing this module imports no TensorFlow, so the command line stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

# Architecture names, without building anything (model.architectures imports Keras).
ARCHITECTURES = ("separable", "plain", "efficientnetb0", "vgg16", "resnet50", "xception")
# Width 48 trained for up to 60 epochs did no better than width 32 for 30 on the real sample's three
# splits, at 2-3x the training time and 0.7x the scoring speed (README, "Compute or data?").
DEFAULT_WIDTH = 32
WIDTH_ARCHITECTURES = ("separable",)  # the architectures whose width is a setting


class ConfigError(ValueError):
    """A training setting is out of range; the message names the setting (as the CLI spells it)."""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is built and trained. Checked on creation; ``width`` is resolved (None off separable)."""

    arch: str = field(default="separable", metadata={
        "help": "network to train (keras.applications ones are trained from scratch, weights=None)",
        "choices": ARCHITECTURES})
    width: int | None = field(default=None, metadata={
        "help": f"first-stage filters of the separable CNN (stages of w, 2w, 4w; default {DEFAULT_WIDTH})",
        "min": 1})
    epochs: int = field(default=30, metadata={"help": "epoch cap (early stopping usually ends sooner)", "min": 1})
    patience: int = field(default=8, metadata={
        "help": "epochs without a better validation PR-AUC before stopping (0: stop at the first)", "min": 0})
    batch_size: int = field(default=128, metadata={"help": "training patches per step", "min": 1})
    learning_rate: float = field(default=2e-3, metadata={
        "help": "Adam's initial learning rate (cosine decay over the run)", "positive": True})
    seed: int = field(default=0, metadata={"help": "seed of the patient split and of training", "min": 0})
    stain_sigma: float = field(default=0.05, metadata={
        "help": "HED stain jitter half-width (0: no stain augmentation)", "min": 0.0})
    time_budget_s: float | None = field(default=None, metadata={
        "help": "stop training once the next epoch would not fit in this many seconds", "positive": True,
        "cli": False})

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or f.name == "arch":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{_option(f.name)} must be a finite number, got {value!r}")
            if f.type in ("int", "int | None") and int(value) != value:
                raise ConfigError(f"{_option(f.name)} must be a whole number, got {value!r}")
            if "min" in f.metadata and value < f.metadata["min"]:
                raise ConfigError(f"{_option(f.name)} must be at least {f.metadata['min']}, got {value!r}")
            if f.metadata.get("positive") and value <= 0:
                raise ConfigError(f"{_option(f.name)} must be greater than 0, got {value!r}")
        # The width is resolved once, here: None for architectures without one, the default otherwise.
        width = (self.width or DEFAULT_WIDTH) if self.arch in WIDTH_ARCHITECTURES else None
        object.__setattr__(self, "width", width)

    # ------------------------------------------------------------------ records
    def as_dict(self) -> dict:
        """Every setting, for run.json and reports."""
        return dataclasses.asdict(self)

    def fingerprint_settings(self) -> dict:
        """The settings that decide whether a trained model can be reused.

        The seven settings of the first runs are always there; a newer setting joins only when it
        is off its default, so runs trained before it existed keep their fingerprint (and their model).
        """
        legacy = ("arch", "epochs", "seed", "time_budget_s", "batch_size", "patience", "width")
        defaults = TrainConfig(arch=self.arch)
        out = {k: getattr(self, k) for k in legacy}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name not in legacy and getattr(self, f.name) != getattr(defaults, f.name)})
        return out

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from ``as_dict`` output (unknown keys are refused, naming them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown training settings {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)

    # ------------------------------------------------------------------ command line
    @classmethod
    def add_cli_options(cls, parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
        """One option per setting (``--batch-size`` for ``batch_size``), checked when parsed."""
        for f in dataclasses.fields(cls):
            if f.name in exclude or not f.metadata.get("cli", True):
                continue
            kwargs = {"default": f.default, "help": f.metadata.get("help")}
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            else:
                kwargs["type"] = _cli_type(f)
            parser.add_argument(_option(f.name), dest=f.name, **kwargs)

    @classmethod
    def from_cli(cls, args: argparse.Namespace, **overrides) -> "TrainConfig":
        """The config the parsed options describe (options a parser did not add keep their default)."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        return cls(**{**given, **overrides})


def _cli_type(f: dataclasses.Field):
    """argparse type for one field: parses and checks with the field's own rule, in argparse's words."""
    whole = f.type in ("int", "int | None")

    def parse(text: str):
        if not text.isascii():  # float() reads full-width and other Unicode digits ("９")
            raise argparse.ArgumentTypeError(f"must be a number written in ASCII digits 0-9, got {text!r}")
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if whole:
            if not value.is_integer():
                raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}")
            value = int(value)
        if "min" in f.metadata and value < f.metadata["min"]:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"must be {kind} of at least {f.metadata['min']}, got {text!r}")
        if f.metadata.get("positive") and value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
        return value

    parse.__name__ = "whole number" if whole else "number"
    return parse
