"""What ``pipeline cache info`` prints: an entry's summary (counts, settings, provenance, runs,
failures) and, with ``--clips``, its clip list. The whole manifest is ``--json``."""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

#: failures listed in the summary (``--clips`` lists every clip)
MAX_FAILURES = 10


def _kv(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def _who(rec: Any) -> str:
    if not isinstance(rec, dict):
        return "?"
    return f"{rec.get('time', '?')} by {rec.get('user', '?')}@{rec.get('host', '?')}"


def _live_splits(entry) -> dict[str, dict[str, int]]:
    """Clips per split as they are now (the manifest's counts are those of its last rewrite: a repair
    and a re-extraction since leave them behind)."""
    done, failed = entry.done_uids(), set(entry.failures())
    out: dict[str, dict[str, int]] = {}
    for c in entry.plan:
        s = out.setdefault(c["split"], {"total": 0, "done": 0, "failed": 0})
        s["total"] += 1
        s["done"] += c["uid"] in done
        s["failed"] += c["uid"] in failed
    return out


def summary_table(m: dict, entry) -> Table:
    """The manifest ``m`` of ``entry`` (with its ``live_status``) as a two-column table."""
    live = m.get("live_status") or {}
    counts = m.get("counts") or {}
    t = Table(title=f"entry {m.get('key')} ({m.get('dataset')})", show_header=False)
    rows: list[tuple[str, str]] = [("path", str(m.get("path")))]
    state = "complete" if live.get("complete") else "incomplete"
    total = counts.get("total", live.get("done", 0) + live.get("failed", 0) + live.get("missing", 0))
    rows.append(("status", f"{state}: {live.get('done')}/{total} clips cached, {live.get('failed')} failed, "
                           f"{live.get('missing')} missing, {live.get('in_flight_claims')} being extracted now"))
    by_split = _live_splits(entry) if entry is not None else counts.get("by_split") or {}
    if by_split:
        rows.append(("splits", ", ".join(f"{s} {v.get('done')}/{v.get('total')}" + (f" ({v['failed']} failed)"
                                                                                      if v.get("failed") else "")
                                         for s, v in sorted(by_split.items()))))
    rows.append(("settings", _kv(m.get("settings") or {})))
    rows.append(("pose", _kv(m.get("pose") or {})))
    if m.get("pose_weights"):
        rows.append(("pose weights", _kv(m["pose_weights"])))
    rows.append(("dataset", f"{m.get('dataset')}, {m.get('num_classes')} classes, coarse type "
                            f"{m.get('coarse_type')!r}, skeleton {m.get('skeleton')}, root {m.get('dataset_root')}"))
    req = m.get("request") or {}
    if req.get("dataset_options"):
        rows.append(("dataset options", ", ".join(f"{k}={v}" for k, v in req["dataset_options"].items())))
    if req.get("pose_options"):
        rows.append(("pose options", ", ".join(f"{k}={v}" for k, v in req["pose_options"].items())))
    rows.append(("key", f"{m.get('key')} (settings {m.get('settings_hash')}, sources {m.get('sources_hash')}, "
                        f"format {m.get('format')})"))
    rows.append(("created", f"{_who(m.get('created'))}, code {m.get('code_revision')}"))
    if m.get("completed"):
        rows.append(("completed", f"{_who(m.get('completed'))}, code {m.get('code_revision_at_completion')}"))
    versions = m.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    runs = m.get("runs") or []
    if runs:
        secs = sum(float(r.get("seconds") or 0) for r in runs)
        hosts = sorted({str(r.get("host")) for r in runs})
        rows.append(("runs", f"{len(runs)} run(s) on {', '.join(hosts)}: {sum(int(r.get('done') or 0) for r in runs)} "
                             f"clips extracted, {sum(int(r.get('failed') or 0) for r in runs)} failed, {secs:.0f} s"))
    fails = entry.failures()
    if fails:
        shown = list(fails.items())[:MAX_FAILURES]
        more = f" (first {MAX_FAILURES}; --clips lists all)" if len(fails) > MAX_FAILURES else ""
        rows.append(("failures", f"{len(fails)}{more}"))
        for uid, f in shown:
            rows.append(("", f"{f.get('clip_id', uid)}: {f.get('reason')}"))
    else:
        rows.append(("failures", "none"))
    for k, v in rows:
        t.add_row(k, escape(v))
    t.caption = "--clips lists the clips; --json prints the whole manifest"
    return t


def clip_rows(entry) -> list[dict]:
    """Every clip of the entry's plan: id, uid, split, label, state and a failure's reason."""
    done = entry.done_uids()
    fails = entry.failures()
    rows = []
    for c in entry.plan:
        uid = c["uid"]
        state = "cached" if uid in done else "failed" if uid in fails else "missing"
        rows.append(dict(clip_id=c["clip_id"], uid=uid, split=c.get("split"), label=c.get("label"), state=state,
                         reason=(fails.get(uid) or {}).get("reason")))
    return rows


def clips_table(entry, rows: list[dict]) -> Table:
    t = Table(title=f"entry {entry.key} ({entry.dataset}): {len(rows)} clips")
    for col in ("clip", "split", "label", "state", "reason"):
        t.add_column(col, justify="right" if col == "label" else "left")
    for r in rows:
        t.add_row(escape(str(r["clip_id"])), str(r["split"]), str(r["label"]), r["state"],
                  escape(str(r["reason"] or "")))
    return t
