"""``pipeline dataset info``: a dataset's annotations, parsed without decoding anything."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pipeline.commands.common import (CacheRootOpt, CoarseTypeOpt, DatasetOpt, DatasetOptsOpt, RootOpt,
                                      dataset_options, load_progress_callback, path_str, progress_bar)
from pipeline.output import print_json, print_table

app = typer.Typer(help="Look at a dataset's annotations without decoding anything.", no_args_is_help=True)


@app.command("info")
def info(
    dataset: str = DatasetOpt,
    root: Optional[Path] = RootOpt,
    cache_root: Optional[Path] = CacheRootOpt,
    dataset_option: Optional[List[str]] = DatasetOptsOpt,
    coarse_type: Optional[str] = CoarseTypeOpt,
    pose_source: Optional[str] = typer.Option(None, "--pose-source", help="Also count the clips this pose source has no poses for, per split (pkl:PATH: an mmaction2/pyskl 2D skeleton file or a folder of them, checked field by field; dataset: the poses the dataset ships). Reads the file; decodes nothing."),
    show_classes: bool = typer.Option(False, "--classes", help="List every class text."),
    show_options: bool = typer.Option(False, "--options", help="List the dataset's options (-o KEY=VALUE) and its pose source's (--pose-option KEY=VALUE) with their types, defaults and help, and stop (no --root needed)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
):
    """Parse a dataset's annotations and report splits, clip counts, classes and missing videos."""
    from stages.extract.plan import ExtractOptions, build_adapter, make_pose_source, pose_coverage

    if show_options:
        _print_options(dataset, pose_source, as_json)
        return
    if root is not None and not root.expanduser().exists():
        # a look at annotations has nothing to look at there; the demo would be generated at the
        # misspelt path (`pipeline extract --dataset demo --root DIR` is how to put it somewhere)
        raise typer.BadParameter(f"{root}: no such folder (the dataset's root)", param_hint="--root")
    if pose_source and pose_source.partition(":")[0] == "hrnet":
        raise typer.BadParameter("--pose-source hrnet estimates poses for every clip: there is nothing to count")
    prog = progress_bar()
    coverage = None
    with prog:
        opts = ExtractOptions(dataset=dataset, root=path_str(root), cache_root=path_str(cache_root),
                              dataset_options=dataset_options(dataset_option, coarse_type), pose_source=pose_source)
        adapter = build_adapter(opts)
        index = adapter.load(progress=load_progress_callback(prog, f"preparing {dataset}"))
        if pose_source:
            pose = make_pose_source(pose_source, opts, adapter)
            coverage = pose_coverage(pose, index, adapter)
            pose.close()
            if coverage is not None:
                coverage.pop("missing")
    missing = index.missing()
    per_class: dict[int, int] = {}
    for c in index.clips:
        per_class[c.label] = per_class.get(c.label, 0) + 1
    summary = {
        "dataset": index.name, "root": index.root, "num_classes": index.num_classes,
        "coarse_type": index.coarse_type, "skeleton": index.skeleton, "clips": len(index.clips),
        "splits": index.split_counts(), "missing_videos": len(missing),
        "missing_examples": [c.clip_id for c in missing[:20]],
        "classes_without_clips": [i for i in range(index.num_classes) if i not in per_class],
        "annotation_files": index.source_files, "meta": index.meta,
    }
    if coverage is not None:
        summary["pose_coverage"] = {"pose_source": pose_source, **coverage}
    if show_classes:
        summary["classes"] = index.classes
    if as_json:
        print_json(summary)
        return
    t = Table(title=f"{index.name}: {index.num_classes} classes, coarse type '{index.coarse_type}'", show_header=False)
    for k in ("root", "skeleton", "clips"):
        t.add_row(k, str(summary[k]))
    for s, n in sorted(index.split_counts().items()):
        t.add_row(f"split {s}", str(n))
    t.add_row("missing videos", str(len(missing)) + (f" (e.g. {', '.join(summary['missing_examples'][:5])})" if missing else ""))
    if summary["classes_without_clips"]:
        t.add_row("classes with no clip", str(len(summary["classes_without_clips"])))
    for k, v in index.meta.items():
        t.add_row(str(k).replace("_", " "), escape(_plain(v)))
    if coverage is not None:
        per = ", ".join(f"{s} {v['clips'] - v['without_poses']}/{v['clips']}" for s, v in sorted(coverage["by_split"].items()))
        t.add_row(f"poses in {pose_source}", f"{coverage['clips'] - coverage['without_poses']} of {coverage['clips']} "
                  f"clips ({per})" + (f"; e.g. without: {', '.join(coverage['examples'][:3])}" if coverage["without_poses"] else ""))
    print_table(t)
    if show_classes:
        ct = Table("class", "clips", "label text")
        for i, txt in enumerate(index.classes):
            ct.add_row(str(i), str(per_class.get(i, 0)), escape(txt))
        print_table(ct)


def _plain(v, top: bool = True) -> str:
    """A meta value for the table: dicts as "key: value", long lists counted (--json has them all)."""
    if isinstance(v, dict):
        inner = ", ".join(f"{k}: {_plain(x, False)}" for k, x in v.items())
        return (inner or "none") if top else "{" + inner + "}"
    if isinstance(v, (list, tuple)):
        if top and len(v) > 6:
            return f"{len(v)} entries (--json lists them)"
        return "[" + ", ".join(_plain(x, False) for x in v) + "]"
    return str(v)


def _print_options(dataset: str, pose_source: Optional[str], as_json: bool) -> None:
    """The option schemas of a dataset adapter and of its (or the given) pose source."""
    from stages.datasets import adapter_class
    from stages.extract.pose.factory import pose_source_class
    from stages.extract.request import default_pose_source
    from stages.settings import canonical_text, describe

    spec = pose_source or default_pose_source(dataset)
    groups = {f"dataset {dataset} (-o KEY=VALUE)": adapter_class(dataset).Options,
              f"pose source {spec.partition(':')[0]} (--pose-option KEY=VALUE)": pose_source_class(spec).Options}
    rows = {title: [dict(key=f.name, type=f.type_text, default=None if f.required else canonical_text(f.default),
                         in_entry_key=f.in_key, help=f.help) for f in describe(schema)]
            for title, schema in groups.items()}
    if as_json:
        print_json(rows)
        return
    for title, opts in rows.items():
        t = Table("option", "type", "default", "help", title=title)
        for r in opts:
            t.add_row(r["key"], r["type"], escape(str(r["default"])), escape(r["help"]))
        if not opts:
            t.add_row("(none)", "", "", "")
        print_table(t)
