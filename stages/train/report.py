"""What a run leaves for people: confusion matrix (JSON + PNG), curves, the experiment's table."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

#: the keys every results.json row has (issue: variant, dataset, num_classes, top1, top5,
#: mean_class_acc, tunable_params_m, gflops, epochs)
RESULT_KEYS = ("variant", "dataset", "num_classes", "top1", "top5", "mean_class_acc", "tunable_params_m",
               "gflops", "epochs")


#: the metric an experiment's paper table reports (``experiment.metric``), as the results table heads it
METRIC_TEXT = {"top1": "Top-1 %", "mean_class_acc": "mean class accuracy %"}
#: ``data.test_views`` as the results table says it
TEST_VIEWS_TEXT = {"resize_three_crop": "3 crops x 1 clip (short side resized to the crop, AIM's)",
                   "three_crop": "3 crops x 1 clip (of the cached frames)"}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x


#: a variant's row of its experiment's table; its presence marks the variant done
RESULT_FILE = "result.json"


def read_result(work_dir: os.PathLike) -> Optional[dict]:
    """A variant's ``result.json`` (None: not finished, or unreadable)."""
    return read_json_or_none(Path(work_dir) / RESULT_FILE)


def read_json_or_none(path: os.PathLike) -> Optional[Any]:
    """A JSON file written by :func:`write_json` (None: absent or unreadable)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: os.PathLike, obj: Any) -> None:
    """Atomic JSON write (a reader never sees half a file)."""
    write_text(path, json.dumps(_jsonable(obj), indent=2) + "\n")


def write_text(path: os.PathLike, text: str) -> None:
    """Atomic text write (:func:`cache.fsutil.atomic_write_text`: fsynced, renamed into place)."""
    from cache.fsutil import atomic_write_text

    atomic_write_text(Path(path), text)


def save_figure(fig, path: os.PathLike, **savefig) -> Path:
    """``fig`` saved to ``path`` as a whole file or not at all (:func:`cache.fsutil.written_whole`: a
    kill or a full disk left half a PNG under the final name), then closed."""
    from cache.fsutil import written_whole

    try:
        with written_whole(Path(path), keep_suffix=True) as tmp:  # (matplotlib takes the format from it)
            fig.savefig(tmp, **savefig)
    finally:
        pyplot().close(fig)
    return Path(path)


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


# -- evaluation -----------------------------------------------------------------------------------
def save_evaluation(out_dir: os.PathLike, res: dict, classes: Sequence[str], test_ds=None, title: str = "") -> None:
    """``confusion.json`` (counts, class texts, per-class accuracy), ``confusion.png``,
    ``predictions.json`` (per test clip: id, label, prediction and every class's score, the
    views averaged as the model predicts: what ``pipeline predict`` gives for the clip's video)."""
    out_dir = Path(out_dir)
    conf = np.asarray(res["confusion"])
    write_json(out_dir / "confusion.json", dict(
        rows="true class", cols="predicted class", classes=list(classes), matrix=conf,
        per_class_acc=res.get("per_class_acc"), top1=res["top1"], top5=res["top5"],
        mean_class_acc=res["mean_class_acc"], num_samples=res.get("num_samples")))
    if test_ds is not None and res.get("indices") is not None and res.get("predictions") is not None:
        rows = []
        scores = res.get("scores")
        for k, (i, p) in enumerate(zip(res["indices"], res["predictions"])):
            r = test_ds.rows[i]
            rows.append(dict(clip_id=r["clip_id"], label=int(r["label"]), pred=int(p),
                             **({"scores": [float(x) for x in scores[k]]} if scores is not None else {})))
        write_json(out_dir / "predictions.json", rows)
    plot_confusion(conf, classes, out_dir / "confusion.png", title=title, res=res)


def plot_confusion(conf: np.ndarray, classes: Sequence[str], path: os.PathLike, title: str = "",
                   res: Optional[dict] = None) -> None:
    """Row-normalised confusion matrix a person can read: class ids on the axes, the texts in a
    legend beside it (up to 60 classes), counts written in the cells (up to 30 classes)."""
    plt = pyplot()
    conf = np.asarray(conf, dtype=np.float64)
    c = conf.shape[0]
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    side = min(4 + 0.35 * c, 30)
    legend = c <= 60
    if legend:
        fig, (ax, tax) = plt.subplots(1, 2, figsize=(side + 7, side), gridspec_kw=dict(width_ratios=[side, 7]))
    else:
        fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    step = max(1, c // 40)
    ax.set_xticks(range(0, c, step))
    ax.set_yticks(range(0, c, step))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    sub = ""
    if res:
        sub = f"top-1 {res['top1']:.1f}%  top-5 {res['top5']:.1f}%  mean class {res['mean_class_acc']:.1f}%"
    ax.set_title(f"{title}\n{sub}".strip())
    if c <= 30:
        for i in range(c):
            for j in range(c):
                if conf[i, j]:
                    ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="fraction of the true class")
    if legend:
        tax.axis("off")
        lines = [f"{i:>2}: " + textwrap.shorten(str(t), 70) for i, t in enumerate(classes)]
        tax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=7 if c > 20 else 8,
                 family="monospace", transform=tax.transAxes)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# -- curves -----------------------------------------------------------------------------------------
def read_scalars(work_dir: os.PathLike) -> tuple[list[dict], list[dict]]:
    """Training and validation scalars of every run in ``work_dir`` (resumed runs are merged;
    a later run's value for the same step wins)."""
    train: dict[int, dict] = {}
    val: dict[int, dict] = {}
    for f in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        for line in f.read_text().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if "loss" in d and "iter" in d:
                train[int(d["iter"])] = d
            elif "top1" in d:
                val[int(d.get("step", d.get("epoch", 0)))] = d
    return [train[k] for k in sorted(train)], [val[k] for k in sorted(val)]


def plot_curves(work_dir: os.PathLike, path: os.PathLike, title: str = "") -> None:
    """Loss (and its parts), learning rate and validation accuracy against epochs."""
    tr, va = read_scalars(work_dir)
    if not tr and not va:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if tr:
        epochs = _epoch_positions(tr)
        for key in ("loss", "l_text", "l_refine"):
            if key in tr[0]:
                axes[0].plot(epochs, [d.get(key) for d in tr], label=key, lw=1.2)
        axes[0].set_xlabel("epoch")
        axes[0].set_title("training loss")
        axes[0].legend()
        if "lr" in tr[0]:
            axes[1].plot(epochs, [d["lr"] for d in tr], color="tab:green")
        axes[1].set_xlabel("epoch")
        axes[1].set_title("learning rate")
    if va:
        ep = [d.get("step", 0) for d in va]
        for key in ("top1", "top5", "mean_class_acc"):
            axes[2].plot(ep, [d.get(key) for d in va], marker="o", label=key)
        axes[2].legend()
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("%")
    axes[2].set_title("validation (3 crops)")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _epoch_positions(tr: list[dict]) -> list[float]:
    """Fractional epoch of each logged iteration: mmengine logs the last iteration of every epoch,
    so an epoch's length is the largest global iteration logged in it minus the previous one's."""
    last: dict[int, int] = {}
    for d in tr:
        e = int(d.get("epoch", 1))
        last[e] = max(last.get(e, 0), int(d["iter"]))
    out = []
    for d in tr:
        e = int(d.get("epoch", 1))
        start = last.get(e - 1, 0) if e > 1 else 0
        length = max(1, last[e] - start) if (e in last and (e + 1) in last or e == 1) else None
        if length is None:  # the last (maybe partial) epoch: assume the length of the one before
            prev = [last[k] - last.get(k - 1, 0) for k in last if k < e]
            length = max(1, prev[-1]) if prev else max(1, last[e] - start)
        out.append(e - 1 + (int(d["iter"]) - start) / length)
    return out


# -- experiment table -------------------------------------------------------------------------------
def _fmt(x: Any, nd: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


#: result rows without numbers: a variant that failed, or one another live run was training
NOT_FINISHED = ("failed", "busy")


def write_results(exp_dir: os.PathLike, rows: list[dict], experiment: dict, notes: Sequence[str] = ()) -> None:
    """``results.json`` (list of rows) and ``results.md`` in the shape of the paper's table."""
    exp_dir = Path(exp_dir)
    for r in rows:
        for k in RESULT_KEYS:
            r.setdefault(k, None)
    write_json(exp_dir / "results.json", rows)
    table = experiment.get("table") or experiment.get("name", "")
    paper_ds = experiment.get("paper_dataset") or "-"
    datasets = sorted({str(r.get("dataset")) for r in rows})
    # optional columns: the fine pairs' top-1 (datasets that name fine pairs, the demo) and the
    # frame counts when the variants differ in them (demo_pose_rate)
    fine = any(r.get("fine_pair_top1") is not None for r in rows)
    frames = len({(r.get("num_video_frames"), r.get("num_pose_frames")) for r in rows
                  if r.get("status") not in NOT_FINISHED}) > 1
    first = rows[0] if rows else {}
    metric = experiment.get("metric") or "top1"
    paper_mean = any(r.get("paper_mean_class_acc") is not None for r in rows)
    views = sorted({str(r["test_views"]) for r in rows if r.get("test_views")})
    views_txt = " / ".join(TEST_VIEWS_TEXT.get(v, v) for v in views) or "3 crops x 1 clip"
    frames_txt = ("the frames each variant reads (below)" if frames else
                  f"{_fmt(first.get('num_video_frames'))} video + {_fmt(first.get('num_pose_frames'))} pose frames")
    lines = [
        f"# {experiment.get('name', '')}: {table}",
        "",
        f"Paper: {table} on {paper_ds} ({METRIC_TEXT.get(metric, metric)}"
        + (", and mean class accuracy %" if paper_mean and metric != "mean_class_acc" else "") + "). "
        f"Ours: {', '.join(datasets)}, {first.get('arch', '?')}, {frames_txt}, {views_txt}.",
        "",
    ]
    paper_top5, paper_params, paper_gflops = (any(r.get(k) is not None for r in rows)
                                              for k in ("paper_top5", "paper_params_m", "paper_gflops"))
    head = ["variant", "top-1 (ours)", "top-1 (paper)", "top-5"] + (["top-5 (paper)"] if paper_top5 else []) + [
        "mean class"] + (["mean class (paper)"] if paper_mean else []) + (["fine pairs"] if fine else []) + (
        ["frames (video + pose)"] if frames else []) + ["tunable params (M)"] + (
        ["params (M, paper)"] if paper_params else []) + ["GFLOPs"] + (["GFLOPs (paper)"] if paper_gflops else []) + [
        "epochs"]
    lines += ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for r in rows:
        if r.get("status") in NOT_FINISHED:
            said = "failed" if r["status"] == "failed" else "being trained by another run"
            lines.append(f"| {r['variant']} | {said} | {_fmt(r.get('paper_top1'))} |" + " |" * (len(head) - 3))
            continue
        cells = [r["variant"], _fmt(r.get("top1")), _fmt(r.get("paper_top1")), _fmt(r.get("top5"))]
        cells += [_fmt(r.get("paper_top5"))] if paper_top5 else []
        cells += [_fmt(r.get("mean_class_acc"))] + ([_fmt(r.get("paper_mean_class_acc"))] if paper_mean else [])
        cells += [_fmt(r.get("fine_pair_top1"))] if fine else []
        cells += [f"{_fmt(r.get('num_video_frames'))} + {_fmt(r.get('num_pose_frames'))}"] if frames else []
        cells += [_fmt(r.get("tunable_params_m"), 2)] + ([_fmt(r.get("paper_params_m"))] if paper_params else [])
        cells += [_fmt(r.get("gflops"), 2)] + ([_fmt(r.get("paper_gflops"))] if paper_gflops else [])
        cells += [_fmt(r.get("epochs"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    notes = list(notes)
    if fine:
        notes.append("fine pairs: top-1 over the test clips of the classes that form the dataset's fine pairs "
                     "(the demo's aliasing pairs, docs/demo.md); argmax over all classes.")
    if any(r.get("gflops") is None and r.get("status") not in NOT_FINISHED for r in rows):
        why = next((r.get("gflops_note") for r in rows if r.get("gflops_note")), None)
        notes.append("GFLOPs unavailable" + (f": {why}" if why else ""))
    notes.append("GFLOPs per clip in the fvcore convention (1 multiply-add = 1 FLOP) at the run's architecture "
                 "and frame counts" + ("; the paper's at its own (its table's rows)" if paper_gflops else "") + ".")
    for n in notes:
        lines.append(f"- {n}")
    write_text(exp_dir / "results.md", "\n".join(lines) + "\n")
