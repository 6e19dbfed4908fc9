"""The search's options, defined once (DESIGN.md §4, §7).

`SearchConfig` is the one definition of every option of `hwq search` and `hwq.search()`: its name,
type, default and help. Each field's metadata (`option(...)`) carries what the command line needs
(flag, choices, metavar, repeatable) and how a value given on the command line or in Python is
brought to its stored form (`coerce`). The click command (`hwq.cli.search_cmd`) and the
signature of `hwq.search()` are built from these fields; the default shown in `--help` is the
field's own. The resolved configuration is written to the run's `config.yaml` and read back by
`--resume` and `hwq verify` (`read_config`), in one form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hwq.errors import UserError
from hwq.llm_phases import CONTEXT_HELP, PHASE_HELP, PHASES
from hwq.model_source import INPUT_DTYPE_HELP, INPUT_DTYPES
from hwq.search.algorithms import ALGORITHMS, SPECS
from hwq.search.executors import EXECUTORS

DEFAULT_MODEL = "digits_resnet"
DEFAULT_OBJECTIVES = ("accuracy", "latency", "energy", "weight_memory")
# a causal language model's (hwq.models.is_causal_lm): as LLM runtimes trade bits
LM_DEFAULT_OBJECTIVES = ("perplexity", "latency", "weight_memory")

TIES = ("none", "same-input")
GRAPH_MODES = ("dataflow", "chain")
GNN_FEATURES = ("graph", "graph+costs")
RL_AGENTS = ("ddpg", "td3")  # stable-baselines3 agents of --algorithm rl (hwq.search.rl.AGENTS)
BO_MODES = ("ehvi", "bomp")  # --bo-mode (hwq.search.bo)


# -- how a given value becomes its stored form -----------------------------------------------------
def _comma_list(value: Any) -> list[str] | None:
    """"a,b" or ["a", "b"] -> ["a", "b"]; None or empty -> None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    items = [i.strip() for i in items if str(i).strip()]
    return items or None


def _repeatable(value: Any) -> list[str]:
    """A string, a sequence of strings or (for --max) a mapping name -> value."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [f"{k}={v}" for k, v in value.items()]
    return [str(v) for v in value]


def _bits(value: Any) -> str | None:
    """"8x8,4x8" or [(8, 8), (4, 8)] -> "8x8,4x8"."""
    if value is None or isinstance(value, str):
        return value or None
    return ",".join(f"{int(w)}x{int(a)}" for w, a in value)


def _model_args(value: Any) -> dict[str, Any]:
    """K=V strings (the command line) or a mapping (Python)."""
    if not value:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    from hwq.models.loading import parse_model_args

    return parse_model_args([value] if isinstance(value, str) else value)


def _input_shape(value: Any) -> list[int] | None:
    """"N,C,H,W" (the command line) or a sequence of ints (Python)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        from hwq.models.loading import parse_input_shape

        shape = parse_input_shape(value)
        return list(shape) if shape else None
    return [int(v) for v in value]


def _int(value: Any) -> int:
    return int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"expected an integer, found {value!r}") from None


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - click's name
    *,
    flag: str | None = None,
    short: str | None = None,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    multiple: bool = False,
    is_flag: bool = False,
    path: str | None = None,
    runtime: bool = False,
    coerce: Callable[[Any], Any] | None = None,
    show_default: str | None = None,
) -> Any:
    """A SearchConfig field with its command-line face. `runtime`: the option changes neither
    the search nor its results (it may differ on --resume). `show_default`: the text of the
    default in --help when the default is not a plain value."""
    meta = {
        "help": help,
        "flag": flag,
        "short": short,
        "choices": tuple(choices) if choices else None,
        "metavar": metavar,
        "multiple": multiple,
        "is_flag": is_flag,
        "path": path,
        "runtime": runtime,
        "coerce": coerce,
        "cli_type": int if coerce in (_int, _opt_int) else None,  # what click parses the value as
        "show_default": show_default,
    }
    if isinstance(default, (list, dict)):
        factory = (lambda d=default: type(d)(d))  # noqa: E731
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SearchConfig:
    """The resolved options of a search (written to config.yaml)."""

    device: str = option(
        help="Profile name or YAML path (required unless --resume).", short="-d",
        coerce=_opt_str,
    )
    model: str = option(
        DEFAULT_MODEL, "Zoo name, package.module:factory, or a saved layer file", short="-m",
        coerce=_opt_str,
    )
    model_args: dict[str, Any] = option(
        {}, "Model factory argument K=V (repeatable).", flag="--model-arg", metavar="K=V",
        multiple=True, coerce=_model_args, show_default="",
    )
    input_shape: list[int] | None = option(
        None, "Example input shape, any rank, samples first.", metavar="N,...",
        coerce=_input_shape
    )
    input_dtype: str | None = option(
        None, INPUT_DTYPE_HELP, choices=INPUT_DTYPES,
        coerce=_opt_str, show_default="float32",
    )
    weights: str | None = option(
        None, "State dict of the trained model.", path="file", coerce=_opt_str
    )
    phase: str | None = option(None, PHASE_HELP, choices=PHASES, coerce=_opt_str,
                               show_default="decode for a causal LM")
    context: int | None = option(None, CONTEXT_HELP, coerce=_opt_int, show_default="<= 512")
    data: str | None = option(
        None, "(train, val, test) loaders for --weights.", metavar="package.module:factory",
        coerce=_opt_str,
    )
    algorithm: str = option("nemo", "Search algorithm", choices=ALGORITHMS, coerce=str)
    objectives: list[str] | None = option(
        None,
        "Comma list of accuracy, sensitivity, weight_memory, activation_memory, bops, latency, "
        "energy",
        metavar="LIST",
        coerce=_comma_list,
        show_default=",".join(DEFAULT_OBJECTIVES) + "; " + ",".join(LM_DEFAULT_OBJECTIVES)
        + " for a causal LM; sensitivity first with --sensitivity",
    )
    sensitivity: str | None = option(
        None,
        "Sensitivity table: layer,w_bits,a_bits,sensitivity (a_bits may be empty) or a HAWQ-V3 "
        "file.",
        path="file",
        coerce=_opt_str,
    )
    max: list[str] = option(
        [],
        "Constraint, repeatable: latency=2ms, energy=5uJ, weight_memory=256KiB, "
        "activation_memory=64KiB, bops=10G, sensitivity=0.5.",
        metavar="NAME=VALUE",
        multiple=True,
        coerce=_repeatable,
        show_default="",
    )
    pin: list[str] = option(
        [],
        "Pin layers (first, last: the first and last weight layers, never a matmul; or names; "
        "comma-separated) to BITS (8 = W8A8, or WxA); "
        "repeatable, e.g. --pin first,last=8.",
        metavar="NAMES=BITS",
        multiple=True,
        coerce=_repeatable,
        show_default="",
    )
    tie: str = option(
        "none", "same-input: layers reading the same tensor share their bits", choices=TIES,
        coerce=str,
    )
    bits: str | None = option(
        None, "Allowed pairs, e.g. 4x4,8x8", metavar="WxA,...", coerce=_bits,
        show_default="the profile's search_default combinations",
    )
    generations: int = option(
        25, "Generations (generation 0 is the initial population)", coerce=_int
    )
    population: int = option(40, "Population per generation, total over species", coerce=_int)
    seed: int = option(0, "The one seed of all the search's randomness", coerce=_int)
    output_dir: str | None = option(
        None, "Run directory", short="-o", path="dir", runtime=True, coerce=_opt_str,
        show_default="runs/<YYYYmmdd-HHMMSS>-<model>-<device>",
    )
    executor: str = option(
        "serial", "Where quality jobs run", choices=EXECUTORS, runtime=True, coerce=str
    )
    address: str | None = option(
        None, "Ray cluster address (default: RAY_ADDRESS, else a local Ray).", runtime=True,
        coerce=_opt_str, show_default="",
    )
    workers: int | None = option(
        None, "Processes / Ray CPUs for quality jobs", runtime=True, coerce=_int,
        show_default="all cores",
    )
    verify_top: int = option(
        3, "Verify this many front policies by QAT; 0 skips", runtime=True, coerce=_int
    )
    verify_epochs: int = option(3, "QAT epochs per verified policy", runtime=True, coerce=_int)
    species: list[str] | None = option(
        None,
        "NEMO species: all, direct, gnn, or names among direct-round, direct-floor, gnn-gcn, "
        "gnn-gat, gnn-unet",
        metavar="LIST",
        coerce=_comma_list,
        show_default="all",
    )
    fixed_sizes: bool = option(
        False, "NEMO ablation: equal species sizes (no UCB).", is_flag=True, coerce=bool
    )
    no_local: bool = option(
        False, "NEMO ablation: no local improvement of the archive (children that repeat a "
        "policy give their place to random single-layer moves).", is_flag=True, coerce=bool
    )
    graph: str = option(
        "dataflow", "Edges the GNN species read: the data flow, or NEMO's chain",
        choices=GRAPH_MODES, coerce=str,
    )
    gnn_features: str = option(
        "graph+costs",
        "Node features of the GNN species: the layer graph's shapes, or those plus each "
        "choice's per-layer costs",
        choices=GNN_FEATURES,
        coerce=str,
    )
    rl_agent: str = option(
        "ddpg", "Agent of --algorithm rl (stable-baselines3): DDPG as HAQ, or TD3",
        choices=RL_AGENTS, coerce=str,
    )
    bo_mode: str = option(
        "ehvi",
        "BO acquisition: ehvi (expected hypervolume improvement on all objectives) or bomp "
        "(BOMP-NAS: UCB on its scalarised score)",
        choices=BO_MODES,
        coerce=str,
    )
    finetune_epochs: int = option(
        0,
        "Fine-tune each candidate this many epochs (QAT with distillation) before measuring "
        "its accuracy; 0: post-training quantization",
        coerce=_int,
    )

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_options(cls, **given: Any) -> SearchConfig:
        """A config from options as the command line or `hwq.search()` give them (None: not
        given, the default applies); unknown names are an error naming them."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise UserError(f"search: unknown option(s) {', '.join(unknown)}")
        values = {}
        for name, value in given.items():
            if value is None:
                continue
            coerce = known[name].metadata.get("coerce")
            values[name] = coerce(value) if coerce else value
        if "device" not in values:
            values["device"] = ""
        return cls(**values)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def runtime_options(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.metadata.get("runtime"))

    def validate(self) -> None:
        if not self.device:
            raise UserError(
                "--device is required (a profile name such as bitfusion, or a YAML path)"
            )
        if self.algorithm not in SPECS:
            raise UserError(
                f"--algorithm: expected one of {', '.join(SPECS)}, found {self.algorithm!r}"
            )
        for name, low in (("generations", 1), ("population", 1), ("verify_top", 0),
                          ("finetune_epochs", 0)):
            if int(getattr(self, name)) < low:
                what = "a positive integer" if low else "0 or more"
                raise UserError(
                    f"--{name.replace('_', '-')}: expected {what}, found {getattr(self, name)}"
                )
        for name, allowed in (("tie", TIES), ("graph", GRAPH_MODES),
                              ("gnn_features", GNN_FEATURES), ("rl_agent", RL_AGENTS),
                              ("bo_mode", BO_MODES)):
            if getattr(self, name) not in allowed:
                raise UserError(
                    f"--{name.replace('_', '-')}: expected {' or '.join(allowed)}, found "
                    f"{getattr(self, name)!r}"
                )
        if self.algorithm != "nemo" and (self.species or self.fixed_sizes or self.no_local):
            raise UserError(
                "--species, --fixed-sizes and --no-local apply to --algorithm nemo only"
            )


def default_text(f: dataclasses.Field[Any]) -> str:
    """The default of a field as --help shows it (empty: none shown)."""
    shown = f.metadata.get("show_default")
    if shown is not None:
        return shown
    if f.default is dataclasses.MISSING or f.default is None or f.default is False:
        return ""
    return str(f.default)


# -- the run directory's config.yaml ---------------------------------------------------------------
def read_config(path: str | Path) -> SearchConfig:
    """The SearchConfig a run directory was started with (its config.yaml)."""
    import yaml

    p = Path(path) / "config.yaml"
    if not p.is_file():
        raise UserError(f"{path}: not a run directory of a search (no config.yaml)")
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not readable YAML ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return SearchConfig.from_dict(dict(doc.get("search", doc)))


def for_resume(output_dir: str | None, given: Mapping[str, Any]) -> SearchConfig:
    """The stored config of the run in `output_dir`, with the runtime options of `given`
    applied. An option that shapes the search must, if given, equal the stored one."""
    if not output_dir:
        raise UserError("--resume needs --output-dir DIR of the run to continue")
    p = Path(output_dir)
    if not (p / "meta.json").is_file():
        raise UserError(f"--resume: {p} is not a run directory (no meta.json)")
    stored = read_config(p)
    fresh = SearchConfig.from_options(**{k: v for k, v in given.items() if v is not None})
    runtime = SearchConfig.runtime_options()
    for key, value in given.items():
        if value is None or key in runtime or key == "device" and not value:
            continue
        mine, theirs = getattr(fresh, key), getattr(stored, key)
        if mine != theirs:
            raise UserError(
                f"--resume: --{key.replace('_', '-')} {mine!r} differs from the run's "
                f"{theirs!r}; leave it out to continue the run as it was started"
            )
    for key in runtime:
        if given.get(key) is not None:
            setattr(stored, key, getattr(fresh, key))
    stored.output_dir = str(p)
    return stored
