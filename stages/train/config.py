"""Run configs: experiments, their variants, and one variant's resolved, checked run config.

An experiment file ``configs/experiments/<name>.py`` (an mmengine Python config) inherits a base
model (``_base_ = ['../_base_/models/pevl_vit_b16.py']``) and defines::

    experiment = dict(name=..., table='Table 5', paper_dataset='Diving48', metric='top1')
    variants = dict(<variant>=dict(paper_top1=<float|None>, [paper_top5, paper_gflops, paper_params_m,
                                   paper_mean_class_acc],
                                   model=dict(<overrides of model>), [data=..., train=..., runner=...,
                                   init_from=...]), ...)   # paper row order
    dataset_overrides = dict(<dataset>=dict(model=..., train=..., data=...))   # optional

A variant's run config is made of layers, later ones winning key by key:

1. the defaults of the schemas (:class:`~stages.model.settings.PeVLSettings` / ``PGVTSettings``,
   :class:`~stages.train.schedule.ScheduleSettings`, :class:`~stages.data.settings.DataSettings`);
2. the dataset config ``configs/_base_/datasets/<dataset>.py`` of the experiment's dataset
   (``data.dataset``, else ``experiment.paper_dataset``), unless the experiment's own ``_base_``
   brings one;
3. the experiment file (and its ``_base_`` files), then the variant's overrides;
4. ``--dataset D`` (another dataset than the experiment's): ``configs/_base_/datasets/D.py`` is an
   overlay whose ``data`` replaces the run's (the experiment's or a variant's ``data`` without a
   ``dataset`` key, e.g. ``extract=dict(num_frames=32)``, still amends it where the file does not
   state the key), whose ``train``, when it has one (the demo's CPU schedule), replaces the run's
   whole (one recipe, not two mixed; the experiment's schedule keys it drops are warned), and whose
   other sections win over the variant's (the demo's brings the tiny CLIP, its frame counts and pose
   switches, and the demo's CPU schedule), then the experiment's ``dataset_overrides[D]``;
5. ``--cfg-options key=value ...`` (mmengine syntax: ``train.lr=1e-4``, ``model.ucmr.num_blocks=2``).

Every key is then checked by its schema: an unknown key at any depth, or a value that does not
convert to its type, is an error naming the dotted key, the layer it came from (the config file,
the variant, ``--cfg-options``) and the closest valid names. The result is the *resolved* run
config (every default filled in): what is saved beside a run, and what ``--exp SAVED.py`` runs again.
"""
from __future__ import annotations

import ast
import copy
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from mmengine.config import Config, DictAction

from stages.data.settings import DataSettings
from stages.nested_config import deep_merge, dotted_get, dotted_leaves, to_plain
from stages.settings import COMMAND_LINE, Settings, SettingsError, describe, did_you_mean, field
from stages.train.schedule import ScheduleSettings

log = logging.getLogger(__name__)

#: keys of a variant entry: the paper's numbers, and the layers it overrides
VARIANT_KEYS = ("paper_top1", "paper_top5", "paper_gflops", "paper_params_m", "paper_mean_class_acc", "model",
                "data", "train", "runner", "init_from")
#: the paper's numbers of a variant that its run config carries (and the results table shows)
PAPER_KEYS = ("paper_top1", "paper_top5", "paper_gflops", "paper_params_m")
#: settings added after runs were recorded, at the value that computes what the code before them
#: did: left out of a run's hashed config at that value (``stages.train.sweep.config_hash``), and not
#: named when a checkpoint's record lacks them, so a run finished before keeps its hash
NEUTRAL_NEW_SETTINGS = {"model.pose.score": True}


def without_neutral_settings(d: dict) -> dict:
    """``d`` (a run config as a dict) without the :data:`NEUTRAL_NEW_SETTINGS` at their neutral value."""
    out = copy.deepcopy(d)
    for dotted, neutral in NEUTRAL_NEW_SETTINGS.items():
        *head, last = dotted.split(".")
        parent = out
        for h in head:
            parent = parent.get(h) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and last in parent and parent[last] == neutral:
            del parent[last]
    return out


def with_neutral_settings(flat: dict) -> dict:
    """``flat`` (a run config's dotted leaves) with each :data:`NEUTRAL_NEW_SETTINGS` it lacks set to
    its neutral value: what a config recorded without it computed (a hashed config, a checkpoint's record)."""
    for k, neutral in NEUTRAL_NEW_SETTINGS.items():
        flat.setdefault(k, neutral)
    return flat


def recorded_as_now(run_config: Mapping) -> dict:
    """A recorded run config (a checkpoint's run record, a finished run's hashed config) with the
    switches its model's type fixes merged in, as this code's configs hold them: one recorded
    before Table 4's baseline wrote its switches into the config (it held the full PeVL's
    modalities, adapters and UCMR, then overridden) compares equal to today's. Nothing else is
    filled in: a setting the record lacks is another version's (the callers say so)."""
    from stages.model.factory import with_fixed_switches

    d = copy.deepcopy(dict(run_config))
    if isinstance(d.get("model"), Mapping):
        d["model"] = with_fixed_switches(d["model"])
    return d


#: the paper's numbers a variant states for the results table only, not in its run config (whose
#: hash a finished run's result carries: a key added there would make every earlier run "another config")
TABLE_ONLY_KEYS = ("paper_mean_class_acc",)


#: where a non-editable install carries the repository's ``configs/`` (setup.py copies it there)
BUNDLED_CONFIGS = Path(__file__).resolve().parents[1] / "bundled" / "configs"


def configs_root() -> Path:
    """The repository's ``configs/`` (``PEVL_CONFIGS`` overrides); from a non-editable install
    (a wheel, ``pip install .`` or ``git+URL``), the copy the build put in the package."""
    env = os.environ.get("PEVL_CONFIGS")
    if env:
        return Path(env)
    # the copy first: an installed package's parents[2] is site-packages, whose own configs/ (some
    # packages leave one) is not ours
    return BUNDLED_CONFIGS if BUNDLED_CONFIGS.is_dir() else Path(__file__).resolve().parents[2] / "configs"


def experiment_names() -> list[str]:
    return sorted(q.stem for q in (configs_root() / "experiments").glob("*.py"))


def resolve_config_path(name: Union[str, Path]) -> Path:
    """An existing file path as is; a name (no folder, no suffix): ``configs/experiments/<name>.py``.
    A path that does not exist is refused, never taken for the built-in experiment of its name (an
    edited copy's path mistyped trained the repository's version)."""
    p = Path(name)
    if p.suffix == ".py" and p.is_file():
        return p.resolve()
    cand = configs_root() / "experiments" / f"{name}.py"
    if not (p.suffix or len(p.parts) > 1) and cand.is_file():
        return cand
    if p.suffix or len(p.parts) > 1:  # a path, not a name: say what is wrong with it
        if p.is_dir():
            raise FileNotFoundError(f"--exp {name}: a folder; give an experiment file (configs/experiments/*.py) "
                                    "or a run's saved config (W/NAME/VARIANT/<time>/*.py)")
        if p.is_file():
            raise ValueError(f"--exp {name}: experiments are mmengine Python configs (.py, as configs/experiments/); "
                             f"{p.suffix or 'this file'} is not read")
        if p.suffix == ".py":
            builtin = (configs_root() / "experiments" / p.name).is_file()
            raise FileNotFoundError(f"--exp {name}: no such file" + (
                f" (the built-in experiment of that name is --exp {p.stem})" if builtin else ""))
    raise FileNotFoundError(did_you_mean(str(name), experiment_names(), "experiment")
                            + "; or give a path to an experiment file or a run's saved config")


def _source_name(path: Path) -> str:
    """A config file as messages name it (relative to the repository when inside it)."""
    try:
        return str(Path(path).resolve().relative_to(configs_root().resolve().parent))
    except ValueError:
        return str(path)


# -- layers with provenance -----------------------------------------------------------------------------
#: misspellings of ``_base_`` refused where a file has no ``_base_`` and the name holds config files
_BASE_TYPOS = ("_bases_", "__base__", "_base", "__base", "_base__", "_bases", "base_", "_Base_")


def _names_config_files(value: ast.AST) -> bool:
    try:
        v = ast.literal_eval(value)
    except ValueError:
        return False
    items = [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple)) else []
    return bool(items) and all(isinstance(i, str) and i.endswith(".py") for i in items)


def _base_files(path: Path) -> list[Path]:
    """The ``_base_`` files a config file names (read from its source; resolved beside it). In a
    file without ``_base_``, a misspelling of it naming ``.py`` files (``_bases_ = [...]``) is
    refused: names starting with ``_`` are helpers a config drops, so its base files were never read."""
    tree = ast.parse(path.read_text(), filename=str(path))
    assigned = [(getattr(t, "id", None) or "", node) for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets]
    if not any(name == "_base_" for name, _ in assigned):
        for name, node in assigned:
            if name in _BASE_TYPOS and _names_config_files(node.value):
                raise SettingsError(f"{path}:{node.lineno}: {name} = ...: did you mean _base_? (names starting with "
                                    "'_' are the file's own helpers: its base files were never read)", name)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_base_" for t in node.targets):
            val = ast.literal_eval(node.value)
            names = [val] if isinstance(val, str) else list(val)
            return [(path.parent / n).resolve() for n in names]
    return []


def _public(d: dict) -> dict:
    return {k: v for k, v in d.items() if not str(k).startswith("_")}  # config-file helpers dropped


def load_config_file(path: Union[str, Path]) -> tuple[dict, dict[str, str]]:
    """A config file as plain Python (its ``_base_`` files merged, mmengine's way) and the
    provenance of every leaf: the file (or base file) that sets it."""
    path = Path(path).resolve()
    full = _public(to_plain(Config.fromfile(str(path)).to_dict()))
    merged: dict = {}
    prov: dict[str, str] = {}
    for base in _base_files(path):
        bd, bp = load_config_file(base)
        merged = deep_merge(merged, bd)
        prov.update(bp)
    before = dotted_leaves(merged)
    here = _source_name(path)
    leaves = dotted_leaves(full)
    prov = {k: v for k, v in prov.items() if k in leaves}
    for k, v in leaves.items():
        if k not in before or before[k] != v:
            prov[k] = here
    return full, prov


class _Layers:
    """A config being composed from layers, with where each leaf came from."""

    def __init__(self):
        self.cfg: dict = {}
        self.prov: dict[str, str] = {}

    def add(self, layer: Mapping, source: Union[str, Mapping[str, str]]) -> None:
        layer = to_plain(layer)
        self.cfg = _merge(self.cfg, layer)
        for k in dotted_leaves(layer):
            if k:
                self.prov[k] = source.get(k, "") if isinstance(source, Mapping) else source

    def replace(self, key: str, value: Any, source: Union[str, Mapping[str, str]]) -> None:
        self.cfg[key] = copy.deepcopy(to_plain(value))
        self.prov = {k: v for k, v in self.prov.items() if not (k == key or k.startswith(key + "."))}
        self.add({key: value}, source)

    def source_of(self, key: str) -> Optional[str]:
        """Where ``key`` (or the nearest parent, else the first key under it) came from."""
        k = key
        while k:
            if k in self.prov:
                return self.prov[k]
            k = k.rpartition(".")[0]
        under = sorted({src for kk, src in self.prov.items() if kk.startswith(key + ".")})
        return ", ".join(under) if under else None


def _merge(base: Mapping, over: Mapping) -> dict:
    """mmengine's merge: dicts key by key, ``_delete_=True`` replaces, everything else replaced."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and v.get("_delete_"):
            out[k] = {kk: copy.deepcopy(vv) for kk, vv in v.items() if kk != "_delete_"}
        elif isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# -- experiments --------------------------------------------------------------------------------------
def load_experiment(name_or_path: Union[str, Path]) -> Config:
    """An experiment file (a name under ``configs/experiments/`` or a path) as an mmengine Config.

    A run's saved config (``W/NAME/VARIANT/<time>/*.py``: a resolved run config, one ``variant``)
    loads as an experiment of that one variant, so ``--exp SAVED.py`` runs it again."""
    path = resolve_config_path(name_or_path)
    try:
        cfg = Config.fromfile(str(path))
    except SyntaxError as e:  # mmengine's message names neither the file nor, often, the line's text
        raise ValueError(f"{path}:{e.lineno}: not valid Python ({e.msg})") from None
    _base_files(path)  # (a misspelt _base_ refused before "needs model" hides it)
    if "variants" not in cfg and "variant" in cfg:  # a saved run config
        cfg["variants"] = {cfg["variant"]: {k: cfg.get(k) for k in PAPER_KEYS if cfg.get(k) is not None}}
    if "variants" not in cfg or "model" not in cfg:
        raise ValueError(f"{path}: an experiment config needs `model` (via _base_) and `variants`")
    variants = cfg["variants"]
    if not isinstance(variants, Mapping) or not variants:
        raise ValueError(f"{path}: variants = {type(variants).__name__} {variants!r:.60}: expected dict(NAME=dict(...), "
                         "...) with one variant at least")
    for name, v in variants.items():
        if not isinstance(v, Mapping):
            raise ValueError(f"{path}: variants.{name} = {v!r:.60}: expected a dict of the variant's keys (dict() for "
                             "none)")
        if not _folder_name(name):  # it names the variant's work-dir folder, and --variant splits on commas
            raise ValueError(f"{path}: variant name {name!r}: a folder's name, without '/', '\\', ',' or control "
                             "characters, not '.' or '..'")
    return cfg


def _folder_name(name: Any) -> bool:
    """Whether ``name`` can name one folder (and one ``--variant`` item)."""
    s = str(name)
    return bool(s.strip()) and s not in (".", "..") and not re.search(r"[/\\,\x00-\x1f]", s)


def list_variants(cfg: Config) -> list[str]:
    """Variant names in the file's (paper row) order."""
    return list(cfg["variants"].keys())


def check_variant(cfg: Config, variant: str, where: str = "") -> dict:
    """The variant's entry, its keys checked."""
    variants = cfg["variants"]
    if variant not in variants:
        raise KeyError(did_you_mean(variant, list_variants(cfg), "variant")
                       + (f" of {where}" if where else ""))
    v = to_plain(variants[variant])
    for k in v:
        if k not in VARIANT_KEYS:
            close = did_you_mean(k, VARIANT_KEYS, "variant key")
            raise SettingsError(f"{where or 'experiment'}, variant {variant}: {close}", f"variants.{variant}.{k}")
    return v


def variant_config(cfg: Config, variant: str, **model_overrides: Any) -> Config:
    """The experiment config with one variant applied (its overrides merged in, ``model_overrides``
    last; the model checked and resolved, no dataset layer): what ``pipeline stats`` counts."""
    from stages.model.factory import model_settings

    v = check_variant(cfg, variant)
    d = _public(to_plain(cfg.to_dict()))
    d.pop("variants", None)
    d.pop("dataset_overrides", None)
    d = _merge(d, {k: val for k, val in v.items() if k not in PAPER_KEYS + TABLE_ONLY_KEYS})
    d["model"] = _merge(d.get("model", {}), to_plain(model_overrides))
    d["model"] = model_settings(d["model"], where="model").to_dict()  # resolved: every default filled in
    d["variant"] = variant
    for k in PAPER_KEYS:
        d[k] = v.get(k)
    return Config(d)


PAPER_DATASETS = {"diving48": "diving48", "diving-48": "diving48", "gym99": "gym99", "finegym99": "gym99",
                  "finegym 99": "gym99", "gym288": "gym288", "finegym288": "gym288", "haa500": "haa500",
                  "toyota smarthome": "toyota_smarthome", "toyota-smarthome": "toyota_smarthome",
                  "toyota_smarthome": "toyota_smarthome", "kinetics400": "kinetics400", "kinetics-400": "kinetics400",
                  "k400": "kinetics400", "demo": "demo"}


def dataset_config_names() -> list[str]:
    """The datasets ``configs/_base_/datasets/`` has a config of."""
    return sorted(p.stem for p in (configs_root() / "_base_" / "datasets").glob("*.py") if not p.stem.startswith("_"))


def dataset_config_path(name: str) -> Path:
    path = configs_root() / "_base_" / "datasets" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(did_you_mean(name, dataset_config_names(), "dataset config") + f" (no {path}; write one like "
                                "configs/_base_/datasets/diving48.py)")
    return path


def default_dataset(cfg: Mapping) -> Optional[str]:
    """The dataset an experiment or run config names: ``data.dataset``, else its paper's dataset."""
    data = cfg.get("data") or {}
    if data.get("dataset"):
        return data["dataset"]
    pd = str((cfg.get("experiment") or {}).get("paper_dataset") or "").strip().lower()
    return PAPER_DATASETS.get(pd)


def parse_cfg_options(items: Optional[Sequence[str]]) -> dict:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a.b": 1, "c": [1, 2]}`` (mmengine's value parsing, but for
    spaces: :func:`_parse_value`). A key given twice with two values is refused."""
    pairs: list[list[str]] = []
    for it in items or []:
        # one item may hold several pairs ("a=1 b=2"); a piece without '=' continues the last value,
        # with the spaces that were before it
        gap = ""
        for part in re.split(r"(\s+)", str(it)):
            if not part or part.isspace():
                gap = part
                continue
            key, sep, val = part.partition("=")
            if sep and key and not any(ch in key for ch in "[](){},'\""):
                pairs.append([key.strip(), val])
            elif pairs:
                pairs[-1][1] += gap + part
            else:
                raise ValueError(f"--cfg-options wants key=value, got {part!r}")
    out: dict = {}
    for k, v in pairs:
        value = _parse_value(k, v.strip())
        if k in out and out[k][1] != value:  # (the last one won, unsaid)
            raise ValueError(f"--cfg-options sets {k} twice ({out[k][0]!r} and {v.strip()!r}); give it once")
        if k in ENTRY_SET:  # (the user's -c only: a checkpoint's record passes them on)
            raise SettingsError(f"-c {k}: set from the cache entry when the run starts (its classes, its skeleton's "
                                "joints times data.extract.persons); choose the entry instead", k, COMMAND_LINE)
        if any(part.lstrip("-").isdigit() for part in k.split(".")):  # mmengine's list items by index
            raise ValueError(f"--cfg-options {k}: list items are not set one by one here; give the whole list "
                             f"({k.rsplit('.', 1)[0]}=[...])")
        out[k] = (v.strip(), value)
    for k in out:  # a key and one inside it: which wins depended on their order, unsaid
        parts = k.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[:i]) in out:
                raise ValueError(f"--cfg-options sets {'.'.join(parts[:i])} and {k} inside it; give one")
    return {k: parsed for k, (_, parsed) in out.items()}


def _parse_value(key: str, val: str) -> Any:
    """One ``--cfg-options`` value as mmengine reads it, but for spaces: its list parser drops
    every space (``coarse_type=floor exercise`` became ``floorexercise``, ``/w/my weights/x.pt``
    another path), so a single value keeps them and a list whose items hold one is refused."""
    bare = val.strip("'\"")  # (quotes around a whole value go, as mmengine's parser takes them off)
    if "," not in bare and not bare.startswith(("[", "(")):
        return DictAction._parse_int_float_bool(bare)
    if re.search(r"[^\s,\[\]()]\s+[^\s,\[\]()]", bare):  # (quotes count: [' x', 'y'] would lose a space)
        raise ValueError(f"--cfg-options {key}={val!r}: a list's items cannot hold spaces here (mmengine's list "
                         "parsing drops them); set that setting in an experiment file")
    return DictAction._parse_iterable(val)


def apply_options(cfg: dict, options: dict) -> dict:
    """``cfg`` with ``--cfg-options`` (dotted keys) applied, as mmengine's ``merge_from_dict`` does."""
    c = Config(copy.deepcopy(cfg))
    c.merge_from_dict(options, allow_list_keys=True)
    return to_plain(c.to_dict())


# -- the run config's schema -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ExperimentInfo(Settings):
    what = "experiment key"

    name: str = field("", help="The experiment's name (its work dir).")
    table: str = field("", help="The paper table it reproduces.")
    paper_dataset: str = field("", help="The dataset of the paper's numbers.")
    metric: str = field("top1", help="The metric the paper reports.")


@dataclass(frozen=True)
class RunConfig(Settings):
    """One variant's run config, resolved and checked."""

    what = "setting"

    model: dict = field(default_factory=dict, help="The model (its type's schema: stages/model/settings.py).")
    train: ScheduleSettings = field(default_factory=ScheduleSettings, help="The schedule.")
    data: DataSettings = field(default_factory=DataSettings, help="The cache entry and the items.")
    runner: dict = field(default_factory=dict, help="Raw mmengine Runner arguments, merged last.")
    experiment: ExperimentInfo = field(default_factory=ExperimentInfo, help="What the experiment reproduces.")
    variant: str = field("", help="The variant's name.")
    exp_name: str = field("", help="The experiment's work-dir name.")
    paper_top1: Optional[float] = field(None, help="The paper's Top-1 of this row.")
    paper_top5: Optional[float] = field(None, help="The paper's Top-5 of this row.")
    paper_gflops: Optional[float] = field(None, help="The paper's GFLOPs of this row.")
    paper_params_m: Optional[float] = field(None, help="The paper's tunable parameters (M) of this row.")
    init_from: dict = field(default_factory=dict, help="{variant: [name prefixes]}: weights copied from other "
                            "variants' final checkpoints (stages/train/warm_start.py).")
    model_wrapper_cfg: dict = field(default_factory=dict, help="mmengine's DDP wrapper (set under torchrun).")

    def check(self, where: str = "", source_of=None) -> None:
        from stages.model.factory import model_settings

        model = model_settings(self.model, where="model", source_of=source_of)
        object.__setattr__(self, "model", model.to_dict())
        for v, prefixes in self.init_from.items():
            ok = isinstance(prefixes, str) or (isinstance(prefixes, (list, tuple))
                                               and all(isinstance(p, str) for p in prefixes))
            if not ok:
                raise SettingsError(f"init_from.{v} = {prefixes!r}: expected name prefixes (text or a list of text)")


def _all_keys(model_type: str) -> list[str]:
    """Every dotted key of a run config with this model type (for "X is a key of Y" hints)."""
    from stages.model.factory import model_settings

    try:
        model_cls = type(model_settings({"type": model_type}))
    except (SettingsError, TypeError):
        model_cls = None
    keys = [f.name for f in describe(RunConfig)]
    if model_cls is not None:
        keys += [f.name for f in describe(model_cls, "model")]
    return keys


def check_run_config(d: dict, source_of: Callable[[str], Optional[str]]) -> RunConfig:
    """``d`` checked by the run config's schema; an unknown key's message also names where a key of
    that name lives (``train.flip_prob`` -> ``data.flip_prob``)."""
    try:
        return RunConfig.from_dict(d, source_of=source_of)
    except SettingsError as e:
        leaf = e.key.rsplit(".", 1)[-1] if e.key else ""
        if str(e).startswith("unknown") and leaf:
            homes = [k for k in _all_keys(str((d.get("model") or {}).get("type", "PeVL")))
                     if k.rsplit(".", 1)[-1] == leaf and k != e.key]
            if homes:
                raise SettingsError(f"{e} ({leaf} is a key of {', '.join(h.rpartition('.')[0] for h in homes)})",
                                    e.key, e.source) from None
        raise


# -- -c keys that change nothing ---------------------------------------------------------------------------
def idle_overrides(cfg: Mapping, options: Mapping) -> dict[str, str]:
    """``{key: what happens to it}``: the keys of ``options`` (``-c``) the model of the resolved run
    config ``cfg`` does not take as given, because another switch leaves them idle (a
    concatenation fusion and ``model.sgmc.*``: "has no effect, with ...") or the model's type
    fixes them (Table 4's baseline and ``model.ucmr.num_blocks``: "is overridden by ...")."""
    from stages.model.factory import fixed_switches, model_settings

    model = to_plain(cfg["model"])
    idle: dict[str, str] = {}
    switches, what = fixed_switches(str(model.get("type", "PeVL")))
    for k in dotted_leaves(switches):
        o = f"model.{k}"
        if o in options and to_plain(options[o]) != dotted_get(model, k):
            idle.setdefault(o, f"is overridden by model.type={model['type']!r} ({what}): the model gets "
                               f"{dotted_get(model, k)!r}")
    for keys, why in model_settings(model, where="model").idle_keys("model"):
        for k in keys:
            for o in options:
                if o == f"model.{k}" or o.startswith(f"model.{k}."):
                    idle.setdefault(o, f"has no effect, with {why}")
    return idle


def refuse_idle_overrides(cfg: Mapping, options: Mapping, run: str = "") -> None:
    """:func:`idle_overrides` as an error: for a command that runs one config (eval, predict,
    explain), a ``-c`` that changes nothing is a mistake to say, not a run to make."""
    idle = idle_overrides(cfg, options)
    if idle:
        key, what = next(iter(idle.items()))
        raise SettingsError(f"-c {key} {what}" + (f" ({run})" if run else ""), key, COMMAND_LINE)


# -- composition ------------------------------------------------------------------------------------------
#: run config keys the command sets, never ``-c``
COMMAND_NAMED = ("exp_name", "variant", "experiment.name", "model_wrapper_cfg")
#: ... and those the cache entry sets when the run starts (a -c value was replaced without a word)
ENTRY_SET = ("model.num_classes", "model.num_joints", "model.num_persons")


def refuse_command_named(cfg_options: Optional[Mapping]) -> None:
    """Refuse a ``-c`` of :data:`COMMAND_NAMED` (accepted before, then overwritten: the run kept its
    names)."""
    named = [k for k in (cfg_options or {}) if k in COMMAND_NAMED or k.split(".")[0] in COMMAND_NAMED]
    if named:
        raise SettingsError(f"-c {named[0]}: not a setting: the experiment's and variant's names come from --exp and "
                            "--variant (and name the work dirs); the DDP wrapper from --launcher", named[0],
                            COMMAND_LINE)


def build_run_config(exp: str, variant: str, dataset: Optional[str] = None,
                     cfg_options: Optional[dict] = None) -> Config:
    """The resolved, checked run config of one variant of experiment ``exp`` (module docstring)."""
    path = resolve_config_path(exp)
    here = _source_name(path)
    exp_cfg = load_experiment(path)
    exp_d, exp_prov = load_config_file(path)
    saved = "variants" not in exp_d
    if saved:  # a saved run config: itself is the one variant
        exp_d["variants"] = to_plain(exp_cfg["variants"])
    v = check_variant(exp_cfg, variant, here)
    own = default_dataset(exp_d)
    layers = _Layers()
    # 2. the experiment's dataset, unless the experiment's own _base_ brings one
    if not (exp_d.get("data") or {}).get("dataset"):
        ds = own or dataset
        if ds is None:
            raise ValueError(f"experiment {exp!r} names no dataset (data.dataset or experiment.paper_dataset); "
                             "pass --dataset")
        ds_d, ds_prov = load_config_file(dataset_config_path(ds))
        layers.add(ds_d, ds_prov)
    # 3. the experiment and the variant
    overrides = exp_d.pop("dataset_overrides", None) or {}
    known_datasets = dataset_config_names()
    for name in overrides:  # (a misspelt name was never applied)
        if name not in known_datasets:
            raise SettingsError(f"{here}: dataset_overrides.{name}: " + did_you_mean(str(name), known_datasets,
                                                                                      "dataset"), f"dataset_overrides.{name}")
    exp_d.pop("variants", None)
    layers.add(exp_d, exp_prov)
    vsrc = f"{here}, variant {variant}"
    layers.add({k: val for k, val in v.items() if k not in PAPER_KEYS + TABLE_ONLY_KEYS}, vsrc)
    layers.add({k: v.get(k) for k in PAPER_KEYS}, vsrc)
    if (not dataset or dataset == own) and own in overrides:  # the experiment's own dataset's amendments
        layers.add(overrides[own], f"{here}, dataset_overrides.{own}")
    # 4. another dataset
    if dataset and dataset != own:
        # (what the variant sets that another dataset's file replaces: said, e.g. the demo's tiny CLIP
        # makes the ViT-B/16 and ViT-L/14 rows one run)
        watched = ("num_video_frames", "num_pose_frames", "clip.arch")

        def model_key(k):
            return dotted_get(layers.cfg.get("model", {}), k)

        before = {k: model_key(k) for k in watched}
        ds_d, ds_prov = load_config_file(dataset_config_path(dataset))
        # the experiment's and the variant's data amendments hold on any dataset (a data config that
        # names a dataset is that dataset's), except where the dataset file states a key
        layers.replace("data", {}, vsrc)
        for amend, src in ((to_plain(exp_d.get("data") or {}), exp_prov), (to_plain(v.get("data") or {}), vsrc)):
            if amend and not amend.get("dataset"):
                layers.add({"data": amend}, src)
        if ds_d.get("train"):  # a schedule is one recipe: the dataset's replaces the experiment's whole
            stated = layers.cfg.get("train") or {}
            kept = {k: layers.source_of(k) for k in dotted_leaves({"train": stated})} if stated else {}
            theirs = dotted_leaves({"train": ds_d["train"]})
            dropped = sorted(k for k in kept if k not in theirs)
            if dropped:
                log.warning("%s/%s on %s: the dataset's schedule replaces the experiment's; %s dropped (%s)", here,
                            variant, dataset, ", ".join(dropped[:4]) + (" ..." if len(dropped) > 4 else ""),
                            ", ".join(sorted({str(kept[k]) for k in dropped})))
            layers.replace("train", {}, ds_prov)
        layers.add(ds_d, ds_prov)
        if dataset in overrides:
            layers.add(overrides[dataset], f"{here}, dataset_overrides.{dataset}")
        for k, was in before.items():
            now = model_key(k)
            if was is not None and now != was:
                log.warning("%s/%s on %s: model.%s=%s (from %s), not the variant's %s", here, variant, dataset, k,
                            now, layers.source_of(f"model.{k}"), was)
    # 5. --cfg-options
    refuse_command_named(cfg_options)
    if cfg_options:
        layers.cfg = apply_options(layers.cfg, cfg_options)
        for k in cfg_options:
            layers.prov[k] = COMMAND_LINE
    d = layers.cfg
    d.setdefault("data", {})
    if not d["data"].get("dataset"):
        d["data"]["dataset"] = default_dataset(d)
    d["exp_name"] = (d.get("experiment") or {}).get("name") or path.stem
    if not _folder_name(d["exp_name"]):
        raise SettingsError(f"experiment.name {d['exp_name']!r} (from {layers.source_of('experiment.name') or here}): "
                            "a folder's name, without '/', '\\', ',' or control characters, not '.' or '..' (it names "
                            "the work-dir folder)", "experiment.name")
    d["variant"] = variant
    run = check_run_config(d, layers.source_of)
    if not saved or cfg_options:  # (a run recorded before the rule keeps its runner keys)
        from stages.train.runner_overrides import refuse_typed_runner_keys

        refuse_typed_runner_keys(run.runner)
    return Config(run.to_dict())
