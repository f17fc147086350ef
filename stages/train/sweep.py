"""``pipeline train --exp NAME``: train every variant of an experiment, then write its table.

Each variant trains into ``W/NAME/VARIANT/`` (``W/NAME-DATASET/VARIANT/`` when ``--dataset``
replaces the experiment's own dataset, so demo numbers never mix with real ones). A variant whose
``result.json`` exists is skipped on a rerun (``force`` retrains it). A failing variant does not
stop the others; the sweep reports it and the caller exits non-zero. Finally
``W/NAME/results.json`` and ``results.md`` collect every finished variant in the paper's row order.
A variant with ``init_from`` (two-stage, e.g. PGVT's late fusion) starts from the final weights of
other variants in the same ``W/NAME/`` and trains after them (:func:`order_by_init_sources`).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from mmengine.config import Config

from stages.nested_config import dotted_leaves, to_plain
from stages.settings import COMMAND_LINE, SettingsError
from stages.train.checkpoints import LAST_CHECKPOINT, checkpoint_files, set_aside_run
from stages.train.config import default_dataset, idle_overrides, list_variants, load_experiment
from stages.train.distributed import broadcast_from_rank0
from stages.train.work_dir_lock import WorkDirBusyError, hold_results_table, hold_variant_dir

log = logging.getLogger(__name__)


@dataclass
class VariantOutcome:
    variant: str
    status: str  # 'trained', 'skipped', 'failed', 'busy' (another live run trains it)
    work_dir: Path
    row: Optional[dict] = None
    error: Optional[str] = None
    other_config: bool = False  # skipped: finished before with another config (or cache entry) than this run's


@dataclass
class SweepReport:
    experiment: str
    exp_dir: Path
    outcomes: list[VariantOutcome] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    results_error: Optional[str] = None  # the results table could not be written

    @property
    def unfinished(self) -> list[VariantOutcome]:
        """The variants this run did not finish: failed, or left to another run that trains them
        (either makes ``pipeline train`` exit 1)."""
        from stages.train.report import NOT_FINISHED

        return [o for o in self.outcomes if o.status in NOT_FINISHED]


#: beside a variant's result.json: the run config its ``config_hash`` is the hash of, so a rerun with
#: another config can say which settings differ
HASHED_CONFIG_FILE = "hashed_config.json"


def _hashed_form(cfg: Config) -> str:
    from stages.train.config import without_neutral_settings

    return json.dumps(without_neutral_settings(cfg.to_dict()), sort_keys=True, default=str)


def config_hash(cfg: Config) -> str:
    return hashlib.sha256(_hashed_form(cfg).encode()).hexdigest()[:16]


def write_hashed_config(vdir: Path, cfg: Config) -> None:
    """Record the run config as hashed, once the run finished (a result.json found later is matched
    to it by the hash both carry, so a stale file names nothing)."""
    from stages.train.report import write_json

    write_json(Path(vdir) / HASHED_CONFIG_FILE, dict(config_hash=config_hash(cfg), config=json.loads(_hashed_form(cfg))))


def _same_weights(result: dict, cfg: Config) -> bool:
    """Whether the CLIP file ``cfg`` names now holds the weights a finished run recorded (by sha256):
    a path is no weights (the file at it may have been replaced, or another path hold the same)."""
    want, path = result.get("pretrained_sha256"), (cfg.model.get("clip") or {}).get("pretrained_path")
    if not (want and path):
        return False
    try:
        st = os.stat(os.path.expanduser(str(path)))
        return _file_sha256(os.path.expanduser(str(path)), st.st_size, st.st_mtime_ns).startswith(str(want)[:16])
    except OSError:
        return False


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """A weights file's sha256, once per sweep for each of its versions (up to ~1 GB a file)."""
    from cache.keys import file_sha256

    return file_sha256(path)


def differing_settings(vdir: Path, old_hash: str, cfg: Config) -> Optional[list[tuple[str, Any, Any]]]:
    """``(key, old, new)`` for the settings in which ``cfg`` differs from the config that finished in
    ``vdir`` with hash ``old_hash``; None where that config is not recorded (an older run) or the
    record is not the finished run's."""
    from stages.train.report import read_json_or_none

    rec = read_json_or_none(Path(vdir) / HASHED_CONFIG_FILE)
    if not rec or rec.get("config_hash") != old_hash or not isinstance(rec.get("config"), dict):
        return None
    from stages.train.config import recorded_as_now, with_neutral_settings

    # (left out of the hashed form at their neutral value: named with it)
    old = with_neutral_settings(dotted_leaves(recorded_as_now(rec["config"])))
    new = with_neutral_settings(dotted_leaves(json.loads(_hashed_form(cfg))))
    missing = object()
    return [(k, old.get(k, "(absent)"), new.get(k, "(absent)")) for k in sorted(set(old) | set(new))
            if old.get(k, missing) != new.get(k, missing)]


def diff_text(diff: list[tuple[str, Any, Any]], most: int = 6) -> str:
    """``key: old -> new; ...`` of :func:`differing_settings`' list, the first ``most`` of it."""
    said = [f"{k}: {a!r} -> {b!r}" for k, a, b in diff]
    return "; ".join(said[:most]) + (f"; and {len(said) - most} more" if len(said) > most else "")


def select_variants(exp_cfg: Config, variants: Optional[Sequence[str]]) -> list[str]:
    allv = list_variants(exp_cfg)
    if not variants:
        return allv
    want: list[str] = []
    for v in variants:
        for name in str(v).split(","):
            name = name.strip()
            if name and name not in want:
                want.append(name)
    unknown = [v for v in want if v not in allv]
    if unknown:
        from stages.settings import did_you_mean

        name = exp_cfg.get("experiment", {}).get("name", "")
        raise KeyError((f"experiment {name}: " if name else "") + "; ".join(did_you_mean(u, allv, "variant")
                                                                         for u in unknown))
    return [v for v in allv if v in want]  # paper order


def order_by_init_sources(exp_cfg: Config, chosen: list[str]) -> list[str]:
    """``chosen`` in paper order, except that a variant with ``init_from`` (a two-stage variant such
    as PGVT's late fusion) comes after the chosen variants it starts from. Unknown source names and
    circles are errors."""
    allv = list_variants(exp_cfg)

    def sources(v: str) -> list[str]:
        src = list(to_plain(exp_cfg["variants"][v]).get("init_from") or {})
        unknown = [s for s in src if s not in allv]
        if unknown:
            raise KeyError(f"variant {v!r} initialises from unknown variant(s) {unknown}; known: {allv}")
        return src

    out: list[str] = []

    def visit(v: str, path: tuple) -> None:
        if v in out:
            return
        if v in path:
            raise ValueError(f"variants initialise from each other in a circle: {' -> '.join(path + (v,))}")
        for src in sources(v):
            if src in chosen:
                visit(src, path + (v,))
        out.append(v)

    for v in chosen:
        visit(v, ())
    return out


def experiment_dir_name(exp_cfg: Config, exp: str, dataset: Optional[str]) -> str:
    """``W/<this>/``: the experiment's name (a saved run config: the name its run had, e.g.
    ``ucmr_ablate-demo``, so a rerun of a demo run never lands beside the real ones), with
    ``-DATASET`` when another dataset than the experiment's replaces it."""
    name = exp_cfg.get("exp_name") or exp_cfg.get("experiment", {}).get("name") or Path(exp).stem
    if dataset:
        own = default_dataset(to_plain(exp_cfg.to_dict()))
        if dataset != own:
            return f"{name}-{dataset}"
    return name


def entry_run_options(entry: str, cache_root: Optional[str], dataset: Optional[str], opts: dict,
                      say: Optional[Callable[[str], None]] = None) -> tuple[dict, str, Any]:
    """``--entry KEY``: the run-config options with the entry's own data settings (its recorded
    request), so that the config saved with the run and recorded in its checkpoints names that entry
    and finds it again, and the dataset whose config applies (the entry's: as ``--dataset``, its
    outputs go to ``W/NAME-DATASET/`` when it is not the experiment's), and the entry. Data options
    given that the entry replaces are said."""
    from stages.data.entry_lookup import entry_data_options, find_entry

    named = find_entry({}, cache_root=cache_root, entry=entry)
    if dataset and dataset != named.dataset:
        raise ValueError(f"--dataset {dataset} and --entry {entry} (an entry of {named.dataset!r}) disagree: "
                         "give one of them")
    own = entry_data_options(named)
    replaced = sorted(k for k in opts if any(k == o or k.startswith(o + ".") for o in own))
    if replaced and say is not None:
        say(f"[warn] --entry {named.key}: {', '.join(replaced)} replaced by the entry's own settings (its request)")
    return {**opts, **own}, named.dataset, named


def run_sweep(exp: str, variants: Optional[Sequence[str]] = None, dataset: Optional[str] = None,
              work_dir: os.PathLike = "work_dirs", cfg_options: Optional[dict] = None, resume: bool = False,
              allow_partial: bool = False, entry: Optional[str] = None, cache_root: Optional[str] = None,
              launcher: str = "none", device: Optional[str] = None, seed: Optional[int] = None,
              force: bool = False, hooks: Optional[list] = None, check_sources: bool = False,
              say: Callable[[str], None] = print, trackers: Optional[Sequence[str]] = None) -> SweepReport:
    """Train the selected variants (default: all) and write the experiment's results table.

    Before anything is trained or written, every selected variant's run config is built and the
    cache entry of each variant to train is found (and checked: complete, or ``allow_partial``;
    with ``check_sources``, re-planned from the raw dataset and refused when the dataset's files
    changed since it was made): a missing entry raises :class:`cache.EntryNotFoundError` naming
    the ``pipeline extract`` command of each missing entry, and nothing is written. A variant that
    fails while it trains does not stop the others. ``trackers``: experiment trackers
    (:mod:`stages.train.trackers`; default: TensorBoard)."""
    from mmengine.dist import get_dist_info

    from stages.train.config import build_run_config
    from stages.train.distributed import init_distributed
    from stages.train.report import read_result
    from stages.train.runner import train_variant
    from stages.train.trackers import DEFAULT_TRACKERS

    exp_cfg = load_experiment(exp)
    chosen = order_by_init_sources(exp_cfg, select_variants(exp_cfg, variants))
    opts = dict(cfg_options or {})
    if entry:
        opts, dataset, _ = entry_run_options(entry, cache_root, dataset, opts, say)
    exp_name = experiment_dir_name(exp_cfg, exp, dataset)
    exp_dir = Path(work_dir) / exp_name
    if seed is not None:
        opts = {"train.seed": int(seed), **{k: v for k, v in opts.items() if k != "train.seed"}}
    init_distributed(launcher)
    rank, world = get_dist_info()
    rep = SweepReport(experiment=exp_name, exp_dir=exp_dir)
    # decide what to skip before anything is written, so every rank decides the same (rank 0's reading:
    # a run finishing a variant between two ranks' reads sent them down different branches)
    done_before = {v: read_result(exp_dir / v) for v in chosen}
    if world > 1:
        done_before = broadcast_from_rank0(done_before)
    cfgs = {}
    for v in chosen:
        cfgs[v] = build_run_config(exp, v, dataset=dataset, cfg_options=opts)
        cfgs[v]["exp_name"] = exp_name
    say_idle_overrides(cfgs, opts, exp_name, say)
    to_train = [v for v in chosen if force or done_before[v] is None]
    entries = find_entries({v: cfgs[v] for v in to_train}, entry=entry, cache_root=cache_root,
                           allow_partial=allow_partial, check_sources=check_sources, say=say)
    entries_now = entries_of_finished({v: cfgs[v] for v in chosen if v not in to_train}, entry, cache_root)
    for v in chosen:
        vdir = exp_dir / v
        cfg = cfgs[v]
        if v not in to_train:
            rep.outcomes.append(finished_outcome(v, vdir, done_before[v], cfg, entries_now.get(v), "finished before",
                                                 exp_name, say))
            continue
        e = entries[v]
        held = contextlib.ExitStack()
        try:
            busy = failed = None
            if rank == 0:
                try:
                    held.enter_context(hold_variant_dir(vdir))
                except WorkDirBusyError as ex:
                    busy = str(ex)
                except OSError as ex:  # (said by every rank: one rank alone leaving the broadcast hangs the rest)
                    failed = f"{type(ex).__name__}: {ex}"
            if world > 1:  # every rank gives the variant up together, or none does
                busy, failed = broadcast_from_rank0((busy, failed))
            if busy:
                raise WorkDirBusyError(busy)
            if failed:
                raise OSError(f"{vdir}: cannot take the variant folder's lock ({failed})")
            now_done = read_result(vdir) if not force else None
            if world > 1:
                now_done = broadcast_from_rank0(now_done)
            if now_done is not None and done_before[v] is None:  # another run finished it since this one started
                rep.outcomes.append(finished_outcome(v, vdir, now_done, cfg, e.key,
                                                     "finished by another run since this one started", exp_name, say))
                continue
            if resume:
                if checkpoint_files(vdir) or (vdir / LAST_CHECKPOINT).is_file():
                    say(f"[warn] {exp_name}/{v} has checkpoints of an unfinished run: resuming from the last one")
            elif rank == 0:  # set aside (no rank reads them when not resuming), so nothing resumes them later
                unfinished = bool(checkpoint_files(vdir)) and done_before[v] is None
                moved = set_aside_run(vdir, time.strftime("%Y%m%d_%H%M%S"))
                if moved:
                    say(f"[warn] {exp_name}/{v} has " + ("checkpoints of an unfinished run: starting over (--resume "
                        "continues it)" if unfinished else "an earlier run's outputs: starting over")
                        + f"; they are moved to {moved}")
            say(f"[train] {exp_name}/{v} on {e.dataset} (entry {e.key}) -> {vdir}")
            row = train_variant(cfg, vdir, e, launcher=launcher, device=device, resume=resume,
                                allow_partial=allow_partial, hooks=hooks, say=say,
                                trackers=DEFAULT_TRACKERS if trackers is None else trackers,
                                result_extra=dict(config_hash=config_hash(cfg), status="done"))
            if rank == 0 and row is not None:  # (after: a resume the run refused must not record its config)
                write_hashed_config(vdir, cfg)
            if row is not None:
                say(f"[done] {exp_name}/{v}: top-1 {row['top1']:.2f}  top-5 {row['top5']:.2f}  "
                    f"mean class {row['mean_class_acc']:.2f}  ({row['train_seconds']:.0f} s)")
            rep.outcomes.append(VariantOutcome(v, "trained", vdir, row=row))
        except KeyboardInterrupt:
            raise
        except WorkDirBusyError as ex:  # (its folder is another run's: nothing of it is touched)
            say(f"[busy] {exp_name}/{v}: {ex}")
            rep.outcomes.append(VariantOutcome(v, "busy", vdir, error=str(ex)))
        except Exception as ex:  # noqa: BLE001  (one variant's failure must not stop the sweep)
            err = f"{type(ex).__name__}: {ex}" + _recovery_hint(ex, e, vdir)
            log.debug("variant %s failed:\n%s", v, traceback.format_exc())
            rep.outcomes.append(VariantOutcome(v, "failed", vdir, error=err))
            if world > 1:
                # a process cannot tell the others it failed: they wait in this variant's collectives, or go on
                # into the next variant's and pair them with its (a hang, or gloo's "collective mismatch").
                # The run stops (torchrun ends the others); a rerun skips what finished, --resume continues.
                say(f"[fail] {exp_name}/{v} (process {rank} of {world}): {err}. Under torchrun a variant that fails "
                    "in one process stops the run: finished variants are kept; a rerun skips them (--resume continues this "
                    "variant's checkpoints where they fit the run)")
                if rank == 0:
                    _write_table(rep, exp_cfg, exp_dir, exp_name, say)
                raise
            say(f"[fail] {exp_name}/{v}: {err}")
        finally:
            held.close()
    if rank == 0:
        _write_table(rep, exp_cfg, exp_dir, exp_name, say)
    if world > 1:  # (a process that returned first ended the run: torchrun stopped rank 0 writing the table)
        from mmengine.dist import barrier

        barrier()
    return rep


def _write_table(rep: SweepReport, exp_cfg: Config, exp_dir: Path, exp_name: str, say: Callable[[str], None]) -> None:
    """The experiment's results table from every variant's result on disk and this run's failures,
    under the table's lock (two runs finishing at once: each reads the other's rows)."""
    from stages.train.report import NOT_FINISHED, write_results

    with hold_results_table(exp_dir):
        rep.rows = collect_rows(exp_cfg, exp_dir, rep.outcomes)
        if not rep.rows:
            return
        notes = []
        other = [o.variant for o in rep.outcomes if o.other_config]
        if other:
            notes.append(f"{', '.join(other)}: finished before with another config or cache entry than the "
                         "command that wrote this table (result.json's config_hash and entry); `--force` retrains "
                         "with this one.")
        if any(r.get("status") not in NOT_FINISHED and not r.get("pretrained") for r in rep.rows):
            notes.append("CLIP with random weights (no pretrained weights: e.g. the demo's tiny CLIP trained from "
                         "scratch on CPU): the numbers show the pipeline learns and are not comparable with the "
                         "paper's.")
        try:
            write_results(exp_dir, rep.rows, dict(exp_cfg.get("experiment", {})) | {"name": exp_name}, notes)
        except OSError as ex:  # the variants' outcomes stand; the table is written again by a rerun
            rep.results_error = f"{type(ex).__name__}: {ex}"
            say(f"[fail] {exp_name}: could not write the results table in {exp_dir} ({rep.results_error}); "
                "a rerun writes it (finished variants are not trained again)")


def finished_outcome(v: str, vdir: Path, old: dict, cfg: Config, entry_now: Optional[str], how: str, exp_name: str,
                     say: Callable[[str], None]) -> VariantOutcome:
    """A variant skipped as finished (``old``: its result.json), said with whether its result is
    this run's config's (``config_hash``; the settings that differ, from its hashed config) and
    this run's entry's (``entry_now``: the entry this run finds for it)."""
    from stages.train.runner import NOT_THE_RUN

    other = bool(old.get("config_hash")) and old["config_hash"] != config_hash(cfg)
    diff = differing_settings(vdir, old["config_hash"], cfg) if other else None
    changed = diff_text(diff) if diff is not None else None
    note = (" with another config than this run's" + (f" ({changed})" if changed else "")
            + ": its result is not this config's (--force retrains)") \
        if other else "" if old.get("config_hash") else \
        " (its result.json records no config_hash, so whether it had this run's config is not known; " \
        "--force retrains)"
    if diff is not None and not diff:  # (recorded before a model type's fixed switches entered the config)
        other = False
        note = " (its config recorded as an earlier version wrote it: the same settings)"
    elif diff and all(k in NOT_THE_RUN for k, _, _ in diff) and (  # (workers, validation interval, ...)
            all(k != "model.clip.pretrained_path" for k, _, _ in diff) or _same_weights(old, cfg)):
        other = False
        note = f" (with {changed}: settings that change nothing the run computes)"
    if entry_now and old.get("entry") and old["entry"] != entry_now:
        # (the config names a request, not an entry: a re-extraction answers it with another)
        other = True
        note += (f" on cache entry {old['entry']}; this run finds entry {entry_now} for it (other dataset files, "
                 "clips or pose extraction): its result is not this entry's (--force retrains on it; "
                 f"--entry {old['entry']} keeps the old one)")
    say(f"[skip] {exp_name}/{v}: {how}{note}, top-1 {old.get('top1')}")
    return VariantOutcome(v, "skipped", vdir, row=old, other_config=other)


def say_idle_overrides(cfgs: dict[str, Config], opts: dict, exp_name: str, say: Callable[[str], None]) -> None:
    """A ``-c`` key that changes nothing in any selected variant's model is refused; one that is
    idle in some variants only (``-c model.ucmr.num_blocks=2`` over Table 4, whose baseline has no
    UCMR) is said for those and kept for the others."""
    idle = {v: idle_overrides(cfg, opts) for v, cfg in cfgs.items()}
    everywhere = set.intersection(*(set(i) for i in idle.values())) if idle else set()
    if everywhere:
        key = sorted(everywhere)[0]
        v, what = next((v, i[key]) for v, i in idle.items())
        raise SettingsError(f"-c {key} {what}" + (f" (on {v}; and on every other variant trained: "
                                                  f"{', '.join(x for x in cfgs if x != v)})" if len(cfgs) > 1 else ""),
                            key, COMMAND_LINE)
    for v, i in idle.items():
        for key, what in i.items():
            say(f"[warn] {exp_name}/{v}: -c {key} {what} (on this variant; the others take it)")


def _recovery_hint(ex: Exception, entry, vdir: Optional[Path] = None) -> str:
    """What recovers a run that a damaged or vanished clip of its entry, or a full disk, stopped
    (the checkpoints so far are kept)."""
    import errno

    from cache.chunks import ChunkFormatError
    from cache.fsutil import mount_point

    if isinstance(ex, ChunkFormatError) and entry is not None:
        return (f" -- `pipeline cache repair {entry.key}` then `pipeline extract` with the entry's options redo "
                "the damaged clips; `pipeline train ... --resume` then continues from the last checkpoint")
    if isinstance(ex, OSError) and ex.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and vdir is not None:
        where = ex.filename or vdir
        kept = checkpoint_files(vdir) if vdir.is_dir() else []
        # without --resume a rerun sets the checkpoints aside and trains from the start again
        return (f" -- while writing {where} (filesystem mounted at {mount_point(vdir if vdir.exists() else vdir.parent)}"
                "): free space there, or give another --work-dir"
                + (f"; then `pipeline train ... --resume` continues from {kept[0].name} (a run whose training had "
                   "finished only evaluates and writes its outputs), where a rerun without it would train again "
                   "from the start" if kept else ""))
    return ""


def _entry_of_each(cfgs: dict[str, Config], entry: Optional[str], cache_root: Optional[str],
                   catch: tuple) -> dict[str, Any]:
    """``{variant: the cache entry its run config names, or the error of ``catch`` looking it up}``,
    each entry looked up once (variants of one data setting share it)."""
    from stages.data.entry_lookup import find_entry

    by_key: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for v, cfg in cfgs.items():
        key = json.dumps(cfg.data.to_dict(), sort_keys=True, default=str) + str(entry)
        if key not in by_key:
            try:
                by_key[key] = find_entry(cfg.data.to_dict(), cache_root=cache_root, entry=entry)
            except catch as ex:
                by_key[key] = ex
        out[v] = by_key[key]
    return out


def entries_of_finished(cfgs: dict[str, Config], entry: Optional[str] = None,
                        cache_root: Optional[str] = None) -> dict[str, str]:
    """The key of the entry each finished variant's run config (``{variant: cfg}``) would read now,
    where one answers it (none: nothing to compare, and nothing to extract for a skipped variant)."""
    from cache import EntryNotFoundError
    from cache.entry import EntryDamagedError, EntryFormatError

    found = _entry_of_each(cfgs, entry, cache_root, (EntryNotFoundError, EntryDamagedError, EntryFormatError, OSError))
    return {v: e.key for v, e in found.items() if not isinstance(e, Exception)}


def find_entries(cfgs: dict[str, Config], entry: Optional[str] = None, cache_root: Optional[str] = None,
                 allow_partial: bool = False, check_sources: bool = False,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """The cache entry of each variant's run config (``{variant: cfg}``), each entry looked up once.
    Every missing entry is reported together, in one :class:`cache.EntryNotFoundError` (one
    ``pipeline extract`` command each); an incomplete entry raises unless ``allow_partial``;
    ``check_sources`` refuses an entry whose dataset files changed (:class:`SourcesChangedError`)."""
    from cache import EntryNotFoundError
    from stages.data.entry_lookup import source_changes

    found: dict[str, Any] = {}
    missing: dict[str, list[str]] = {}  # message -> variants
    for v, e in _entry_of_each(cfgs, entry, cache_root, (EntryNotFoundError,)).items():
        if isinstance(e, EntryNotFoundError):
            missing.setdefault(str(e), []).append(v)
        else:
            found[v] = e
    if missing:
        if len(missing) == 1:
            raise EntryNotFoundError(next(iter(missing)))
        parts = [f"{len(missing)} cache entries are missing."]
        parts += [f"For {', '.join(vs)}: {msg}" for msg, vs in missing.items()]
        raise EntryNotFoundError("\n".join(parts))
    checked: set = set()
    for v, e in found.items():
        if e.key in checked:
            continue
        checked.add(e.key)
        if check_sources:
            changed = source_changes(e, root=cfgs[v].data.get("root"), cache_root=cache_root)
            if changed:
                raise SourcesChangedError(f"the dataset's files changed since entry {e.key} was made: "
                                          + "; ".join(changed) + ". Re-extract (pipeline extract, same "
                                          "options) to get an entry of the files as they are now")
        st = e.require_complete(allow_partial)
        if st.missing:
            say(f"[warn] entry {e.key} is incomplete ({len(st.missing)} of {st.total} clips missing); "
                "--allow-partial: training on the clips that are there")
    return found


class SourcesChangedError(RuntimeError):
    """``--check-sources``: the dataset's files are not those the entry was made from."""


def collect_rows(exp_cfg: Config, exp_dir: Path, outcomes: list[VariantOutcome]) -> list[dict]:
    """One row per variant of the experiment that finished (now or before) or failed now."""
    from stages.train.config import PAPER_KEYS, TABLE_ONLY_KEYS
    from stages.train.report import read_result

    by_v = {o.variant: o for o in outcomes}
    rows = []
    for v in list_variants(exp_cfg):
        r = read_result(exp_dir / v)
        o = by_v.get(v)
        # the paper's numbers as the experiment states them now (result.json keeps only its top-1)
        paper = {k: exp_cfg["variants"][v].get(k) for k in PAPER_KEYS + TABLE_ONLY_KEYS}
        if o is not None and o.status == "failed":
            rows.append(dict(variant=v, status="failed", error=o.error, **paper))
        elif r is not None:  # (a variant another run trains: its result once it has one)
            rows.append({**r, **paper})
        elif o is not None and o.status == "busy":
            rows.append(dict(variant=v, status="busy", error=o.error, **paper))
    return rows
