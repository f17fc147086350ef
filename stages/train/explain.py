"""Pictures of what a trained PeVL does on one clip, as the PeVL supplement draws them (Sec. 4).

:func:`explain_clip` loads a checkpoint written by ``pipeline train``, runs one clip of the cache
entry (the centre test crop, pose frames at segment middles) through the model with
:meth:`stages.model.PeVL.record` on, and writes PNGs into ``out_dir``:

* ``fig8_spatial.png`` (supp. Fig. 8): per video frame, the joints weighted by the pose encoder
  (the weights P2V's mask is built from: bigger, darker dots weigh more) and the P2V block's
  attention of the frame's CLS token over the patches (the refined video attention);
* ``fig9_grouping.png`` (Fig. 9): every patch coloured by the pose or background token of V2P
  that attends to it most ("grouping tokens"), beside the frame with its joints;
* ``fig10_temporal.png`` (Fig. 10): attention over the pose frames: what each frame receives in
  the pose encoder's last T-Attn (the CLS tokens' row), and S_FW's frame weights for the label text;
* ``fig11_phrases.png`` (Fig. 11): for every phrase of the label text, S_FW's word-to-frame
  attention averaged over the phrase's words, over the pose frames.

A picture needs its part of the model (P2V, V2P, pose, text, S_FW); the others are skipped and
named in the returned notes. Nothing is downloaded and nothing is decoded: frames come from the cache.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
import numpy as np
import torch
from mmengine.config import Config

from cache import CacheEntry
from cache.layout import clip_uid
from stages.data.dataset import CacheClipDataset
from stages.skeletons import entry_skeleton
from stages.train.report import pyplot, save_figure

log = logging.getLogger(__name__)


def find_clip(entry: CacheEntry, clip_id: str) -> dict:
    """The entry's plan row of ``clip_id`` (any split); a clear error naming a few ids if absent."""
    rows = entry.clips(None)
    for r in rows:
        if r["clip_id"] == clip_id:
            return r
    some = ", ".join(r["clip_id"] for r in rows[:: max(1, len(rows) // 5)][:5])
    raise KeyError(f"no clip {clip_id!r} in cache entry {entry.key} ({len(rows)} clips, e.g. {some})")


def explain_clip(cfg: Config, checkpoint: os.PathLike, entry: CacheEntry, clip_id: str, out_dir: os.PathLike,
                 device: str = "cpu") -> tuple[list[Path], list[str]]:
    """Write the pictures of one clip; returns (files written, notes on pictures skipped)."""
    from stages.model.factory import model_settings
    from stages.model.settings import PeVLSettings
    from stages.train.checkpoints import load_checkpoint_into
    from stages.train.runner import build_wrapped_model, check_entry_fits, item_kwargs

    out_dir = Path(out_dir)
    # the pictures are PeVL's (P2V, V2P, S_FW): PGVT has no record(); Table 4's baseline and the
    # text-free rows are PeVLs (each picture their parts lack is skipped, with a note)
    if not isinstance(model_settings(cfg.model), PeVLSettings):
        raise ValueError(f"explain draws what PeVL's parts do (P2V, V2P, S_FW); this checkpoint's model is a "
                         f"{cfg.model.get('type')}")
    row = find_clip(entry, clip_id)
    wrapped = build_wrapped_model(cfg, entry, device)
    sizes = check_entry_fits(cfg, entry, wrapped)
    load_checkpoint_into(wrapped, checkpoint)
    wrapped.to(device).eval()
    model = wrapped.recognizer
    # the centre one of the run's test views (data.test_views: resized to the crop or cut from the cache)
    ds = CacheClipDataset(entry, row["split"], mode="test", test_crops=("center",),
                          **item_kwargs(cfg, sizes["crop_size"], entry.grid_cell))
    index = next(i for i, r in enumerate(ds.rows) if r["clip_id"] == clip_id)
    item = ds[index]
    batch = wrapped.data_preprocessor(torch.utils.data.default_collate([item]))["batch"]
    with torch.no_grad(), model.record() as maps:
        out = model.encode(batch)
        scores = model.predict(batch)[0]
    label, pred = int(row["label"]), int(scores.argmax())
    classes = entry.classes
    view = dict(frames=item["frames"][0].permute(0, 2, 3, 1).numpy(),  # (T_v, S, S, 3) uint8
                joints=item["joints"][0].numpy(), vpi=item["video_pose_index"].numpy(),
                grid=int(sizes["crop_size"] // sizes["patch"]), skeleton=entry_skeleton(entry.skeleton, entry.settings))
    # (from the one view drawn: eval's prediction averages the run's test views and may differ)
    title = f"{clip_id}: true '{classes[label]}'" + ("" if pred == label else
                                                      f", predicted '{classes[pred]}' from this view")
    out_dir.mkdir(parents=True, exist_ok=True)
    written, notes = [], []

    def _add(name, fn, need, why):
        if not need:
            notes.append(f"{name}: skipped ({why})")
            return
        path = out_dir / name
        fn(path)
        written.append(path)

    jw = out.get("joint_weights")
    _add("fig8_spatial.png", lambda p: _fig8(p, view, jw, maps.get("p2v_attention"), title),
         jw is not None or "p2v_attention" in maps, "the variant has neither joint weights nor P2V")
    _add("fig9_grouping.png", lambda p: _fig9(p, view, maps["v2p_attention"], model.pose_encoder.num_prefix_tokens,
                                              title),
         "v2p_attention" in maps, "no V2P in this variant")
    fw = None
    if model.use_text and "fw" in model.sims:
        from stages.model.sgmc import frame_word_attention

        with torch.no_grad():
            sent, words, wmask = model.encode_texts(model.class_text_id[label:label + 1])
            fw = frame_word_attention(out["frames"].float(), words.float(), wmask,
                                      model.cfg["sgmc"]["fw_temperature"])
    _add("fig10_temporal.png", lambda p: _fig10(p, view, maps.get("pose_temporal_attention"), fw,
                                                model.pose_encoder.num_prefix_tokens if model.pose_encoder else 0,
                                                title),
         "pose_temporal_attention" in maps or fw is not None, "no pose T-Attn and no S_FW in this variant")
    _add("fig11_phrases.png", lambda p: _fig11(p, model, label, fw, title), fw is not None,
         "no S_FW (frame-word similarity) in this variant")
    return written, notes


# -- drawing --------------------------------------------------------------------------------------
def _save(fig, path, title: str) -> None:
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _frame_ids(n: int, most: int = 8) -> list[int]:
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, most))})


def _draw_pose(ax, joints, weights, skeleton, size, color="tab:blue"):
    xy = joints[:, :2] * size
    seen = joints[:, 2] > 0
    for a, b in skeleton.limbs:
        if seen[a] and seen[b]:
            ax.plot(xy[[a, b], 0], xy[[a, b], 1], color="white", lw=1.0, alpha=0.8)
    w = np.ones(len(xy)) / len(xy) if weights is None else np.asarray(weights, dtype=float)
    rel = w / max(w.max(), 1e-12)
    ax.scatter(xy[seen, 0], xy[seen, 1], s=8 + 60 * rel[seen], c=rel[seen], cmap="Reds", vmin=0, vmax=1,
               edgecolors=color, linewidths=0.6, zorder=3)


def _fig8(path, view, joint_weights, p2v, title):
    plt = pyplot()
    frames, joints, vpi, g = view["frames"], view["joints"], view["vpi"], view["grid"]
    ids = _frame_ids(len(frames))
    rows = 1 + int(p2v is not None)
    fig, axes = plt.subplots(rows, len(ids), figsize=(1.7 * len(ids), 1.9 * rows + 0.5), squeeze=False)
    s = frames.shape[1]
    for c, k in enumerate(ids):
        t = int(vpi[k])
        ax = axes[0, c]
        ax.imshow(frames[k])
        _draw_pose(ax, joints[t], None if joint_weights is None else joint_weights[0, t].cpu().numpy(),
                   view["skeleton"], s)
        ax.set_title(f"frame {k} (pose {t})", fontsize=7)
        if p2v is not None:
            att = p2v[0, k].float().cpu().numpy().reshape(g, g)
            ax2 = axes[1, c]
            ax2.imshow(frames[k])
            ax2.imshow(att / max(att.max(), 1e-12), cmap="inferno", alpha=0.6, extent=(0, s, s, 0),
                       interpolation="nearest", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("weighted joints", fontsize=8)
    if p2v is not None:
        axes[1, 0].set_ylabel("P2V attention", fontsize=8)
    _save(fig, path, f"Spatial attention (supp. Fig. 8)\n{title}")


def _fig9(path, view, v2p, prefix, title):
    plt = pyplot()
    from matplotlib.colors import ListedColormap

    frames, joints, vpi, g = view["frames"], view["joints"], view["vpi"], view["grid"]
    ids = _frame_ids(len(frames), 4)
    att = v2p[0].float().cpu().numpy()  # (T_v, prefix + J + 1, N_v)
    n_tok = att.shape[1]
    names = (["CLS"] * prefix) + [str(j) for j in range(n_tok - prefix - 1)] + ["background"]
    cmap = ListedColormap(plt.get_cmap("tab20")(np.arange(n_tok) % 20))
    fig, axes = plt.subplots(2, len(ids), figsize=(2.2 * len(ids), 4.8), squeeze=False)
    s = frames.shape[1]
    for c, k in enumerate(ids):
        t = int(vpi[k])
        ax = axes[0, c]
        ax.imshow(frames[k])
        xy = joints[t, :, :2] * s
        seen = joints[t, :, 2] > 0
        ax.scatter(xy[seen, 0], xy[seen, 1], s=10, c="tab:blue", zorder=3)
        ax.set_title(f"frame {k}", fontsize=8)
        label = att[k].argmax(0).reshape(g, g)  # the grouping token each patch attends to most
        ax2 = axes[1, c]
        ax2.imshow(frames[k], alpha=0.35)
        ax2.imshow(label, cmap=cmap, vmin=-0.5, vmax=n_tok - 0.5, alpha=0.75, extent=(0, s, s, 0),
                   interpolation="nearest")
        for (y, x), v in np.ndenumerate(label):
            ax2.text((x + 0.5) * s / g, (y + 0.5) * s / g, "B" if v == n_tok - 1 else "C" if v < prefix
                     else str(v - prefix), ha="center", va="center", fontsize=5)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[1, 0].set_ylabel("patch -> token", fontsize=8)
    used = sorted({names[v] for k in ids for v in np.unique(att[k].argmax(0))}, key=names.index)
    _save(fig, path, f"V2P grouping tokens (supp. Fig. 9): joints 0-{n_tok - prefix - 2}, B = background"
                     f"{', C = CLS' if prefix else ''}; used: {len(used)}\n{title}")


def _fig10(path, view, temporal, fw, prefix, title):
    plt = pyplot()
    rows = []
    if temporal is not None:  # (B, tokens, T): attention each frame receives, per token
        tt = temporal[0].float().cpu().numpy()
        rows.append(("pose T-Attn" + (" (CLS)" if prefix else " (joints)"), tt[0] if prefix else tt.mean(0)))
    if fw is not None:
        rows.append(("S_FW frame weights", fw["frame_weights"][0, 0].float().cpu().numpy()))
    frames, vpi = view["frames"], view["vpi"]
    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows) + 1, 1, figsize=(10, 1.2 + 0.9 * len(rows) + 1.2),
                             gridspec_kw=dict(height_ratios=[1.6] + [1] * len(rows)))
    strip = np.concatenate([frames[k] for k in _frame_ids(len(frames), 8)], axis=1)
    axes[0].imshow(strip)
    axes[0].set_axis_off()
    for ax, (name, w) in zip(axes[1:], rows):
        ax.imshow(w[None] / max(w.max(), 1e-12), aspect="auto", cmap="Blues", vmin=0, vmax=1)
        ax.set_yticks([0], [name], fontsize=8)
        ax.set_xticks(vpi, [str(i) for i in range(len(vpi))], fontsize=5)
        ax.set_xlim(-0.5, n - 0.5)
    axes[-1].set_xlabel("pose frame (ticks: the video frames among them)", fontsize=8)
    _save(fig, path, f"Temporal attention (supp. Fig. 10)\n{title}")


def _fig11(path, model, label, fw, title):
    plt = pyplot()
    from stages.model.text_encoder import phrase_token_spans

    prompt = model.class_texts[label]
    w2f = fw["word_to_frame"][0, 0].float().cpu().numpy()  # (L, T)
    try:
        spans = phrase_token_spans(model.tokenizer, prompt)
    except ValueError:
        n_words = int((model.class_tokens[label] != 0).sum())
        spans = [(f"token {i}", i, i + 1) for i in range(1, n_words - 1)]
    att = np.stack([w2f[a:b].mean(0) for _, a, b in spans])
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.45 * len(spans)))
    ax.imshow(att / att.max(axis=1, keepdims=True).clip(1e-12), aspect="auto", cmap="Blues", vmin=0, vmax=1)
    ax.set_yticks(range(len(spans)), [p for p, _, _ in spans], fontsize=8)
    ax.set_xlabel("pose frame", fontsize=8)
    _save(fig, path, f"Phrase-to-frame attention of S_FW (supp. Fig. 11)\n{title}")


def default_out_dir(checkpoint: os.PathLike, clip_id: str) -> Path:
    """``explain_<clip uid>/`` beside the checkpoint: the clip's file-name-safe id, as the cache
    names its folder (a custom dataset's id may hold ``../`` or ``/``)."""
    return Path(checkpoint).parent / f"explain_{clip_uid(clip_id)}"


