"""Configuration: one dataclass per component, named profiles, dotted overrides.

A run's configuration is built in three layers, each overriding the one before:

1. the dataclass defaults below (they run on 2 CPU cores),
2. a named profile, `primer/profiles/<name>.yaml` (`tiny`, `small`, `phi1`),
3. the environment: `PRIMER__SECTION__FIELD=value` for any field (`PRIMER__TRAIN__PRETRAIN__MAX_STEPS=200`;
   values parsed as YAML), and the shortcut `PRIMER_STORE_ROOT` for `store.root` — how a worker, a
   container or a Kubernetes pod is pointed at the team's store without touching deployments,
4. overrides, as dotted keys: `--set pack.seq_len=512` on the CLI, or `{"pack.seq_len": 512}` in a
   Prefect flow's `overrides` parameter.

Every field carries `help` (shown by `primer config --help-fields`) and optional bounds (`min`, `max`,
`choices`). A bad value fails at start with a `ConfigError` that names the field, e.g.
`pack.seq_len: must be >= 8, got 0`.

Secrets are never configuration: the store reads keys from the environment or a Prefect Secret block
whose *name* is configured here.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from primer.errors import ConfigError
from primer.settings import knob
from primer.settings.curate import CurateConfig
from primer.settings.evaluate import EvaluateConfig, ExportConfig, SelectConfig, ServeConfig
from primer.settings.pack import PackConfig, SourceSpec, TokenizerConfig
from primer.settings.store import StoreConfig
from primer.settings.synth import SynthConfig, TeacherConfig
from primer.settings.train import ModelSection, PhaseConfig, TrainConfig

PROFILES_DIR = Path(__file__).parent / "profiles"
__all__ = ["PrimerConfig", "StoreConfig", "SourceSpec", "TokenizerConfig", "PackConfig", "CurateConfig",
           "TeacherConfig", "SynthConfig", "ModelSection", "PhaseConfig", "TrainConfig", "load_config", "parse_set_args", "validate", "ConfigError"]


@dataclass
class PrimerConfig:
    """The whole configuration of a run. Each component is documented by its own dataclass."""

    profile: str = knob("tiny", help="Profile this configuration was built from.")
    store: StoreConfig = knob(default_factory=StoreConfig, help="Where every stage reads and writes.")
    tokenizer: TokenizerConfig = knob(default_factory=TokenizerConfig, help="Tokenizer trained or loaded by pack.")
    pack: PackConfig = knob(default_factory=PackConfig, help="Packing documents into token shards.")
    curate: CurateConfig = knob(default_factory=CurateConfig, help="Filtering, dedup, quality, decontamination.")
    teacher: TeacherConfig = knob(default_factory=TeacherConfig, help="The OpenAI-compatible teacher endpoint.")
    synth: SynthConfig = knob(default_factory=SynthConfig, help="Synthetic textbooks and exercises.")
    model: ModelSection = knob(default_factory=ModelSection, help="Model shape.")
    train: TrainConfig = knob(default_factory=TrainConfig, help="DeepSpeed training: pretrain and finetune phases.")
    select: SelectConfig = knob(default_factory=SelectConfig, help="Checkpoint selection (MBPP validation + val loss).")
    export: ExportConfig = knob(default_factory=ExportConfig, help="Hugging Face release of a checkpoint.")
    evaluate: EvaluateConfig = knob(default_factory=EvaluateConfig, help="HumanEval/MBPP scoring (evaluate flow).")
    serve: ServeConfig = knob(default_factory=ServeConfig, help="primer serve: OpenAI-compatible server.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------- machinery


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str, base: Any = None) -> Any:
    """Turn a parsed YAML/JSON value into `tp`, or raise ConfigError naming `path`.

    `base` is the value the field has without this setting (for a section: its default_factory's
    instance): a partial mapping is merged into it, so `train.finetune.max_steps=10` keeps finetune's own
    lr/warmup instead of falling back to the PhaseConfig class defaults."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], path, base)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, path, base if isinstance(base, tp) else None)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (str, dict)) and item_tp is SourceSpec:
            value = [value]  # one source given on its own
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(v if not (item_tp is SourceSpec and isinstance(v, str)) else {"uri": v}, item_tp,
                        f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        try:
            as_float = float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return int(as_float)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    return value


def _unknown_key(cls: type, key: str, path: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"
    return ConfigError(f"{path}{'.' if path else ''}{key}: no such setting{hint}")


def _build(cls: type, data: dict[str, Any], path: str = "", base: Any = None) -> Any:
    """A `cls` instance from `data`, merged into `base` (or the class's own defaults when it has them):
    nested sections start from the field's default_factory value, not from their class defaults."""
    hints = typing.get_type_hints(cls)
    if base is None:
        try:
            base = cls()
        except TypeError:  # a required field (no default): built from `data` alone below
            base = None
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown_key(cls, key, path)
        kwargs[key] = _coerce(value, hints[key], f"{path}.{key}" if path else key, getattr(base, key, None))
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except TypeError as e:  # a required field (no default) is missing
        raise ConfigError(f"{path or cls.__name__}: {e}") from None


def validate(obj: Any, path: str = "") -> None:
    """Check every field's bounds and choices, recursively; raise ConfigError naming the first bad one."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        where = f"{path}.{f.name}" if path else f.name
        lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        if dataclasses.is_dataclass(value):
            validate(value, where)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    validate(item, f"{where}[{i}]")
        if lo is not None and isinstance(value, (int, float)) and value < lo:
            raise ConfigError(f"{where}: must be >= {lo}, got {value!r}")
        if hi is not None and isinstance(value, (int, float)) and value > hi:
            raise ConfigError(f"{where}: must be <= {hi}, got {value!r}")
        if choices is not None and value not in choices:
            raise ConfigError(f"{where}: must be one of {', '.join(map(str, choices))}; got {value!r}")
    check = getattr(obj, "check", None)
    if callable(check):
        check(path)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: '{part}' is a value, not a section")
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_set_args(pairs: list[str] | None) -> dict[str, Any]:
    """`["pack.seq_len=512", "store.root=s3://b/p"]` -> `{"pack.seq_len": 512, ...}` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set pack.seq_len=512")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict[str, Any]:
    path = PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"profile: unknown profile {name!r}; available: {', '.join(available_profiles())}")
    return yaml.safe_load(path.read_text()) or {}


ENV_PREFIX = "PRIMER__"
ENV_SHORTCUTS = {"PRIMER_STORE_ROOT": "store.root"}


def env_overrides(environ: dict[str, str] | None = None, with_names: bool = False) -> dict[str, Any]:
    """Dotted settings from the environment: `PRIMER__A__B=v` -> {"a.b": v}, plus ENV_SHORTCUTS.
    With `with_names`, values are (variable name, value) pairs, so errors can name the variable."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for var, dotted in ENV_SHORTCUTS.items():
        if environ.get(var):
            out[dotted] = (var, environ[var])
    for var, raw in sorted(environ.items()):
        if var.startswith(ENV_PREFIX) and len(var) > len(ENV_PREFIX):
            dotted = ".".join(part.lower() for part in var[len(ENV_PREFIX):].split("__"))
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                value = raw
            out[dotted] = (var, value)
    return out if with_names else {k: v for k, (_, v) in out.items()}


def _nested(dotted: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        _set_dotted(nested, key, value)
    return nested


def load_config(profile: str = "tiny", overrides: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> PrimerConfig:
    """Defaults <- profile <- environment <- dotted overrides, then validated.

    Raises ConfigError naming the bad field (and the environment variable, when it came from one)."""
    overrides = dict(overrides or {})
    env = env_overrides(environ, with_names=True)
    data = _deep_merge(load_profile(profile), {"profile": profile})
    try:
        data = _deep_merge(data, _nested({k: v for k, (_, v) in env.items()}))
        data = _deep_merge(data, _nested(overrides))
        cfg = _build(PrimerConfig, data)
        validate(cfg)
    except ConfigError as e:
        from_env = [var for dotted, (var, _) in env.items()
                    if dotted not in overrides and (str(e).startswith(dotted) or dotted in str(e).split(":")[0])]
        if from_env:
            raise ConfigError(f"{e} (set in the environment by {', '.join(from_env)})") from None
        raise
    return cfg


def fingerprint_fields(obj: Any) -> str:
    """Canonical JSON of a config (section) for content-addressing outputs."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def describe_fields(cls: type = PrimerConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted name, default, help) for every leaf field: the one place options are documented."""
    rows = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe_fields(tp, f"{name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        if isinstance(default, list):
            default = json.dumps([dataclasses.asdict(d) if dataclasses.is_dataclass(d) else d for d in default])
        rows.append((name, str(default), f.metadata.get("help", "")))
    return rows
