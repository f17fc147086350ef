"""``pipeline cache ls | info | verify | repair | gc | doctor | export | show``: inspect, check, repair, clean and
look at the shared cache."""
from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pipeline.commands.common import CacheRootOpt, console, exit_on_error, human_bytes, print_error, progress_bar
from pipeline.output import print_json, print_table

app = typer.Typer(help="Inspect, check and clean the shared feature cache.", no_args_is_help=True)


@app.command("ls")
def cache_ls(
    cache_root: Optional[Path] = CacheRootOpt,
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Only this dataset's entries."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List cache entries with size, completeness and settings (and those of an older store format)."""
    from cache import CacheStore
    from cache.fsutil import dir_size
    from cache.layout import newer_format

    store = CacheStore.existing(cache_root)
    rows = []
    for e in store.entries(dataset):
        st = e.status()
        s = e.settings
        size, counted_now = e.bytes_on_disk(st)
        rows.append({"key": e.key, "dataset": e.dataset, "status": "complete" if st.complete else "incomplete",
                     "done": st.done, "failed": st.failed, "total": st.total, "bytes": size,
                     "bytes_as_of": "now" if counted_now else "completion",
                     "pose": s.get("pose_source"), "random_pose_weights": e.random_pose_weights,
                     "coarse_type": e.attrs.get("coarse_type"), "frames": s.get("num_frames"),
                     "frames_per_segment": e.frames_per_segment, "persons": e.persons,
                     "short_side": s.get("short_side"),
                     "codec": s.get("frames_codec"),
                     "created": e.attrs.get("created", {}).get("time"), "path": str(e.path)})
    old, newer = store.old_format_entries(dataset), store.newer_format_entries(dataset)
    for path, fmt in old + newer:
        rows.append({"key": path.name, "dataset": path.parent.name,
                     "status": f"{'newer' if newer_format(fmt) else 'old'} format {fmt}", "format": fmt,
                     "bytes": dir_size(path), "path": str(path)})
    damaged = store.damaged_entries(dataset)
    listed = {r["path"]: r for r in rows}
    for path, problems in damaged:
        r = listed.get(str(path))
        if r is not None:  # readable (a manifest gone): listed above, marked here
            r["status"] += f", damaged: {'; '.join(problems)}"
            r["problems"] = problems
            continue
        rows.append({"key": path.name, "dataset": path.parent.name, "status": f"damaged: {'; '.join(problems)}",
                     "problems": problems, "bytes": dir_size(path), "path": str(path),
                     "clips_on_disk": _count_dirs(path / "clips")})
    if dataset and not rows:  # a misspelt --dataset listed an empty table, exit 0
        here = sorted(p.name for p in store.entries_dir.iterdir() if p.is_dir()) if store.entries_dir.is_dir() else []
        import difflib

        close = difflib.get_close_matches(dataset, here, n=1)
        console.print(f"[yellow]note:[/] no entries of dataset {dataset!r} in {store.root}"
                      + (f"; did you mean {close[0]!r}?" if close else "")
                      + (f" (datasets here: {', '.join(here)})" if here else ""), highlight=False)
    if as_json:
        print_json(rows)
        return
    t = Table(title=f"cache {store.root}")
    t.add_column("key", no_wrap=True)
    for col in ("dataset", "coarse type", "status", "clips", "failed", "size", "pose", "T_v", "K", "people",
                "short side", "codec", "created"):
        t.add_column(col)
    for r in rows:
        if "format" in r or "clips_on_disk" in r:
            clips = str(r["clips_on_disk"]) if "clips_on_disk" in r else ""
            t.add_row(r["key"], r["dataset"], "", f"[red]{r['status']}[/]", clips, "", human_bytes(r["bytes"]), "", "",
                      "", "", "", "", "")
            continue
        pose = str(r["pose"]) + (" [yellow](random weights)[/]" if r["random_pose_weights"] else "")
        t.add_row(r["key"], r["dataset"], str(r["coarse_type"] or ""), r["status"], f"{r['done']}/{r['total']}",
                  str(r["failed"]), human_bytes(r["bytes"]), pose, str(r["frames"]),
                  str(r["frames_per_segment"]), str(r["persons"]), str(r["short_side"]), str(r["codec"]),
                  str(r["created"]))
    print_table(t)
    if old:
        console.print(_old_format_hint(len(old)))
    if newer:
        console.print(_newer_format_hint(len(newer)))
    if damaged:
        console.print(_damaged_hint(len(damaged)))


def _count_dirs(path: Path) -> int:
    try:
        return sum(1 for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError:
        return 0


def _damaged_hint(n: int) -> str:
    from cache.entry import DAMAGED_HINT

    return f"{n} damaged entr{'y' if n == 1 else 'ies'} (metadata missing or unreadable): {DAMAGED_HINT}"


def _old_format_hint(n: int) -> str:
    from cache import FORMAT_VERSION

    return (f"{n} entr{'y' if n == 1 else 'ies'} of an older store format (this code reads format {FORMAT_VERSION}) "
            "cannot be read: re-extract with `pipeline extract` (same options) and remove them with "
            "`pipeline cache gc`")


def _newer_format_hint(n: int) -> str:
    from cache import FORMAT_VERSION

    return (f"{n} entr{'y' if n == 1 else 'ies'} of a newer store format (this code reads format {FORMAT_VERSION}), "
            "written by a colleague's newer code: update pevl-pipeline to read them; `pipeline cache gc` leaves them")


@app.command("info")
def cache_info(
    key: str = typer.Argument(..., help="Entry key (a unique prefix is enough) or path."),
    cache_root: Optional[Path] = CacheRootOpt,
    clips: bool = typer.Option(False, "--clips", help="List every clip instead: id, split, label, state (cached, failed, missing) and a failure's reason."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole manifest as JSON (with --clips: the clip list)."),
):
    """Summarise an entry: counts, settings, provenance, runs and failures (live status)."""
    from cache import CacheStore

    from cache.entry import DAMAGED_HINT, EntryDamagedError

    store = CacheStore.existing(cache_root, key)  # a root or an entry that is not there: exit 2 (an input error)
    try:
        e = store.open(key)
    except EntryDamagedError as ex:  # found, and damaged: exit 1, as a damaged entry the summary finds
        print_error(ex)
        raise typer.Exit(1)
    if clips:
        from pipeline.commands.cache_info import clip_rows, clips_table

        rows = clip_rows(e)
        if as_json:
            print_json(rows)
        else:
            print_table(clips_table(e, rows))
        return
    problems = e.metadata_problems()
    try:
        m = e.manifest()
    except EntryDamagedError:  # what the entry's zarr.json says instead, and what is wrong
        m = {k: e.attrs.get(k) for k in ("format", "key", "settings_hash", "sources_hash", "dataset", "settings",
                                         "pose", "skeleton", "coarse_type", "dataset_root", "created")}
    st = e.status()
    m["live_status"] = {"complete": st.complete, "done": st.done, "failed": st.failed,
                        "in_flight_claims": st.claimed, "missing": len(st.missing)}
    m["path"] = str(e.path)
    if problems:
        m["damaged"] = {"problems": problems, "recover": DAMAGED_HINT}
    if as_json:
        print_json(m)
    else:
        from pipeline.commands.cache_info import summary_table

        print_table(summary_table(m, e))
    if problems:
        console.print(f"[red]damaged[/] {e.key}: {'; '.join(problems)}. {DAMAGED_HINT}", highlight=False)
        raise typer.Exit(1)


@app.command("verify")
def cache_verify(
    key: Optional[str] = typer.Argument(None, help="Entry key or path; default: every entry."),
    cache_root: Optional[Path] = CacheRootOpt,
    quick: bool = typer.Option(False, "--quick", help="Shapes only; skip re-hashing array contents."),
    sources: bool = typer.Option(False, "--sources", help="Also re-plan each entry from the raw dataset and say which of the dataset's files changed since the entry was made (parses annotations, stats videos; decodes nothing)."),
    root: Optional[Path] = typer.Option(None, "--root", help="With --sources: the raw dataset's root (default: the root the entry was made from)."),
):
    """Check entries: every cached clip opens, has the right shapes and (default) matches its digests."""
    from cache import CacheStore

    from cache.entry import EntryDamagedError, EntryFormatError

    store = CacheStore.existing(cache_root, key)
    try:
        entries = [store.open(key)] if key else store.entries()
    except (EntryFormatError, EntryDamagedError) as ex:
        console.print(f"[red]error:[/] {ex}", highlight=False)
        raise typer.Exit(1)
    old = [] if key else store.old_format_entries()
    newer = [] if key else store.newer_format_entries()
    for path, fmt in old:
        console.print(f"[red]old store format {fmt}[/] {path.name} ({path.parent.name}) at {path}")
    if old:
        console.print(_old_format_hint(len(old)))
    for path, fmt in newer:
        console.print(f"[yellow]newer store format {fmt}[/] {path.name} ({path.parent.name}) at {path}")
    if newer:
        console.print(_newer_format_hint(len(newer)))
    readable = {e.path for e in entries}
    unreadable = [] if key else [(p, pr) for p, pr in store.damaged_entries() if p not in readable]
    for path, problems in unreadable:
        console.print(f"[red]damaged[/] {path.name} ({path.parent.name}) at {path}: {'; '.join(problems)}",
                      highlight=False)
    if unreadable:
        console.print(_damaged_hint(len(unreadable)))
    bad = len(old) + len(unreadable)
    prog = progress_bar()
    with prog:
        for e in entries:
            task = prog.add_task(f"verifying {e.key}", total=max(1, e.status().done))
            rep = store.verify(e, deep=not quick, progress=lambda i, n: prog.update(task, completed=i))
            st = e.status()
            state = "complete" if st.complete else f"incomplete ({len(st.missing)} missing)"
            if sources:
                rep.problems.extend(f"sources: {c}" for c in _source_changes(e, root, cache_root))
            if rep.ok:
                console.print(f"[green]ok[/] {e.key} ({e.dataset}): {rep.checked} clips checked, {state}"
                              + (", sources unchanged" if sources else ""))
            else:
                bad += 1
                console.print(f"[red]{len(rep.problems)} problem(s)[/] in {e.key} ({e.dataset}):")
                for p in rep.problems[:50]:
                    console.print(f"  {p}")
    if bad:
        raise typer.Exit(1)


def _source_changes(entry, root: Optional[Path], cache_root: Optional[Path]) -> list[str]:
    from stages.data.entry_lookup import source_changes

    try:
        return source_changes(entry, str(root) if root else None, str(cache_root) if cache_root else None)
    except Exception as e:  # noqa: BLE001  (the raw dataset gone or unreadable is a finding, not a crash)
        return [f"could not re-plan the entry ({type(e).__name__}: {e})"]


@app.command("gc")
def cache_gc(
    cache_root: Optional[Path] = CacheRootOpt,
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only say what would be removed."),
    incomplete_older_than: Optional[float] = typer.Option(None, "--incomplete-older-than", min=0.0, help="Also remove incomplete entries untouched for this many days (never one a live extraction writes into)."),
    keep_last: Optional[int] = typer.Option(None, "--keep-last", min=1, help="Also keep only the newest N (>= 1) complete entries of each dataset x setting (older source-file sets are superseded)."),
    damaged: bool = typer.Option(False, "--damaged", help="Also remove damaged entries (their zarr.json, plan.json or manifest.json missing or unreadable) instead of letting `pipeline extract` rebuild their metadata."),
):
    """Remove what is stale: killed writers' leftovers, dead claims, quarantined clips, old-format entries (and optionally more)."""
    from cache import CacheStore
    from cache.entry import DAMAGED_HINT

    store = CacheStore.existing(cache_root)
    acts = store.gc_plan(incomplete_older_than_days=incomplete_older_than, keep_last=keep_last, damaged=damaged)
    if not damaged:
        for path, problems in store.damaged_entries():
            console.print(f"keeping damaged entry {path} ({'; '.join(problems)}): {DAMAGED_HINT}", highlight=False)
    if not acts:
        console.print("nothing to remove")
        return
    for a in acts:
        console.print(f"{'would remove' if dry_run else 'removing'} {a.path} ({human_bytes(a.bytes)}): {a.why}")
    if not dry_run:
        freed, left = store.gc(acts)
        console.print(f"freed {human_bytes(freed)}")
        if left:
            console.print(f"[red]{len(left)} not removed[/] (left for the next gc: ask their owner, or check the "
                          "mount; `pipeline cache doctor` checks a shared root's permissions):", highlight=False)
            for line in left:
                console.print(f"  {escape(line)}", highlight=False)
            raise typer.Exit(1)


@app.command("export")
def cache_export(
    key: str = typer.Argument(..., help="Entry key (a unique prefix is enough) or path."),
    h5: Path = typer.Option(..., "--h5", help="Output HDF5 file (written beside, then renamed into place)."),
    force: bool = typer.Option(False, "--force", help="Replace --h5 when it exists."),
    cache_root: Optional[Path] = CacheRootOpt,
):
    """Copy an entry into one HDF5 file (same arrays and attributes) for tools that read HDF5."""
    if h5.is_dir():  # found before the copy, not after it (with a whole entry's .partial left beside)
        raise typer.BadParameter(f"{h5} is a folder; give the HDF5 file to write (e.g. {h5 / 'entry.h5'})",
                                 param_hint="--h5")
    if h5.exists() and not force:  # (it was replaced without a word, whatever it held)
        raise typer.BadParameter(f"{h5} exists; --force replaces it", param_hint="--h5")
    from cache import CacheStore
    from cache.store import export_hdf5

    e = CacheStore.existing(cache_root, key).open(key)
    prog = progress_bar()
    with prog, _sigterm_as_interrupt():  # (a batch scheduler's time limit: the .partial file was left)
        task = prog.add_task(f"exporting {e.key}", total=max(1, e.status().done))
        n = export_hdf5(e, h5, progress=lambda i, t: prog.update(task, completed=i))
    planned = len(e.plan)
    console.print(f"wrote {n} clips to {h5}" + (f": {n} of the {planned} planned, the entry is incomplete (the "
                                                 "file says so: attributes export_clips, export_planned_clips)"
                                                 if n < planned else ""))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt for the block, so a writer's cleanup runs as on Ctrl-C."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _png_option(value: Optional[Path]) -> Optional[Path]:
    """cache show's --out: a .png file (a folder, or a name without the extension, reached OpenCV
    as "could not find a writer for the specified extension")."""
    if value is not None and (value.is_dir() or value.suffix.lower() != ".png"):
        raise typer.BadParameter(f"{value}: give a .png file to write" + (" (this is a folder)" if value.is_dir() else ""))
    return value


@app.command("show")
def cache_show(
    key: str = typer.Argument(..., help="Entry key (a unique prefix is enough) or path."),
    clip_id: Optional[str] = typer.Argument(None, help="The clip to draw (its id or uid); not with --gallery."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", callback=_png_option, help="PNG to write. Default: <clip uid>.png, or gallery-<key>.png with --gallery, in the current folder."),
    video: bool = typer.Option(False, "--video", help="Also write an MP4 of the cached frames (every candidate of every segment, in time order) with the same drawing (next to the PNG, .mp4)."),
    fps: float = typer.Option(4.0, "--fps", min=0.1, help="Frame rate of the --video MP4 (the cached frames are T_v samples of the clip)."),
    gallery: Optional[int] = typer.Option(None, "--gallery", min=1, help="N random clips of the entry on one sheet (the middle cached frame of each) instead of one clip."),
    split: Optional[str] = typer.Option(None, "--split", help="With --gallery: only clips of this split."),
    seed: int = typer.Option(0, "--seed", help="With --gallery: which random clips (the same seed, the same clips)."),
    cache_root: Optional[Path] = CacheRootOpt,
):
    """Draw what stage one cached: frames with the poses (edges; joints coloured by confidence, red to green),
    the mask grid as a translucent overlay and the person boxes HRNet used. Check a real dataset's cuts, boxes
    and poses here before spending GPU days on it."""
    import random

    from cache import CacheStore
    from stages.show import clip_sheet, frame_overlay, gallery_sheet, write_mp4, write_png
    from stages.skeletons import entry_skeleton

    with exit_on_error(verbose=False):
        e = CacheStore.existing(cache_root, key).open(key)
    skeleton = entry_skeleton(e.skeleton, e.settings)  # every kept person's joints
    rows = e.clips(split=split)
    if gallery is not None:
        if clip_id is not None:
            raise typer.BadParameter("give a CLIP_ID or --gallery N, not both")
        if not rows:
            console.print(f"[red]error:[/] entry {e.key} has no cached clips" + (f" in split {split}" if split else ""))
            raise typer.Exit(2)
        picked = random.Random(seed).sample(rows, min(gallery, len(rows)))
        with exit_on_error(verbose=False):  # a damaged clip: its file named, no traceback
            clips = [e.read_clip(r["uid"]) for r in picked]
        sheet = gallery_sheet(clips, skeleton, [e.classes[c.label] for c in clips])
        path = write_png(out or Path(f"gallery-{e.key}.png"), sheet)
        console.print(f"wrote {path} ({len(clips)} clips of {len(rows)})")
        return
    if clip_id is None:
        raise typer.BadParameter("give a CLIP_ID (see `pipeline cache info`) or --gallery N")
    row = next((r for r in rows if clip_id in (r["clip_id"], r["uid"])), None)
    if row is None:
        known = e.clips(done_only=False)
        why = "is not cached yet (failed or not extracted)" if any(
            clip_id in (r["clip_id"], r["uid"]) for r in known) else "is not in this entry"
        console.print(f"[red]error:[/] clip {clip_id!r} {why}")
        raise typer.Exit(2)
    with exit_on_error(verbose=False):
        clip = e.read_clip(row["uid"])
    label = e.classes[clip.label] if 0 <= clip.label < len(e.classes) else None
    path = write_png(out or Path(f"{row['uid']}.png"), clip_sheet(clip, skeleton, label))
    console.print(f"wrote {path}")
    for note in clip.attrs.get("notes") or ():  # what stage one saw in the video and its poses
        console.print(f"  note: {escape(str(note))}", highlight=False)
    if video:
        mp4 = write_mp4(path.with_suffix(".mp4"), [frame_overlay(clip, t, skeleton) for t in range(len(clip.frames))], fps)
        console.print(f"wrote {mp4}")


@app.command("repair")
def cache_repair(
    key: str = typer.Argument(..., help="Entry key (a unique prefix is enough) or path."),
    cache_root: Optional[Path] = CacheRootOpt,
    quick: bool = typer.Option(False, "--quick", help="Shapes only; skip re-hashing array contents (finds fewer damaged clips)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only say what would be moved aside."),
):
    """Move the clips `verify` finds damaged into the entry's quarantine/ (removed by `cache gc`) and reopen a
    finished entry that lacks clips, so that `pipeline extract` (the options that made the entry) extracts them again."""
    from cache import CacheStore
    from cache.entry import EntryDamagedError, EntryFormatError

    store = CacheStore.existing(cache_root, key)
    try:
        e = store.open(key)
        e.check_against_key()  # the clips are judged by the plan and settings: those first
    except (EntryFormatError, EntryDamagedError) as ex:  # metadata is extract's to rebuild
        console.print(f"[red]error:[/] {ex}", highlight=False)
        raise typer.Exit(1)
    prog = progress_bar()
    with prog:
        task = prog.add_task(f"checking {e.key}", total=max(1, e.status().done))
        rep = store.repair(e, deep=not quick, dry_run=dry_run, progress=lambda i, n: prog.update(task, completed=i))
    verb = "would move" if dry_run else "moved"
    for uid, why in rep.quarantined.items():
        console.print(f"{verb} clips/{uid} to quarantine/: {'; '.join(why)}", highlight=False)
    if rep.reopened:
        console.print(f"{'would reopen' if dry_run else 'reopened'} the finished entry {e.key}: index removed, "
                      "manifest status incomplete")
    if rep.reindexed:
        console.print(f"{'would write' if dry_run else 'wrote'} the index of {e.key} again")
    if rep.missing:
        console.print(f"{rep.missing} clip(s) to extract: run {_extract_hint(e, cache_root)}"
                      + ("; `pipeline cache gc` removes the quarantined clips" if rep.quarantined else ""),
                      highlight=False)
    elif not rep.quarantined and not rep.reindexed:
        console.print(f"[green]ok[/] {e.key}: nothing to repair")


def _extract_hint(e, cache_root: Optional[Path]) -> str:
    """The command that finishes entry ``e``: from the request it recorded, else in words."""
    req = e.attrs.get("request")
    if req:
        try:
            from stages.data.entry_lookup import extract_command

            return "`" + extract_command({
                "dataset": req["dataset"], "root": e.attrs.get("dataset_root"),
                "pose_source": e.settings.get("pose_source"), "pose_options": dict(req.get("pose_options") or {}),
                "extract": dict(req.get("settings") or {}), "dataset_options": dict(e.attrs.get("dataset_options") or {}),
            }, str(cache_root) if cache_root else None) + "`"
        except Exception:  # noqa: BLE001  (an older request layout: say it in words)
            pass
    return (f"`pipeline extract --dataset {e.dataset}` with the options that made the entry (`pipeline cache info "
            f"{e.key}` shows its settings)")


@app.command("doctor")
def cache_doctor(
    cache_root: Optional[Path] = CacheRootOpt,
    every: bool = typer.Option(False, "--all", help="Check every folder under the root (slow on a large cache), not only those writers create files in."),
):
    """Check that a cache root can be shared by a group of users: one group, group-writable setgid folders,
    and your umask (docs/cache.md, 'Sharing a cache between users')."""
    from cache import CacheStore
    from cache.sharing import check_sharing

    root = CacheStore.existing(cache_root).root
    rep = check_sharing(root, every=every)
    if rep.ok:
        console.print(f"[green]ok[/] {root}: {rep.checked} folders of group {rep.group}, group-writable and setgid; "
                      f"your umask {rep.umask:04o}", highlight=False)
        return
    console.print(f"[red]{len(rep.problems)} problem(s)[/] sharing {root} (group {rep.group or '?'}; "
                  f"{rep.checked} folders checked):", highlight=False)
    for p in rep.problems:
        console.print(f"  {p}", highlight=False)
    console.print("to fix (as the owner of the folders, or an administrator):\n  " + "\n  ".join(rep.fix_commands()),
                  highlight=False)
    raise typer.Exit(1)
