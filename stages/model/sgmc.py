"""SGMC multi-level contrastive association (Sec. 3.3.1): S_VS, S_PS, S_FW and eq. (4)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

#: The similarity terms of eq. (4), switchable for Table 6.
SIMILARITY_TERMS = ("vs", "ps", "fw")


def action_similarity(x: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
    """``S_VS = sim(V, S)`` / ``S_PS = sim(P, S)``: cosine, (B, E) x (C, E) -> (B, C)."""
    return F.normalize(x, dim=-1) @ F.normalize(sentence, dim=-1).T


def _masked_softmax(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    return x.masked_fill(~mask, float("-inf")).softmax(dim=dim)


def frame_word_attention(frames: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                         temperature: float = 0.01) -> dict[str, torch.Tensor]:
    """The two attentions ``S_FW`` applies on ``S^_FW = F W^T`` (X-CLIP [38]), and ``S_FW`` itself.

    ``frames`` (B, T, E), ``words`` (C, L, E), ``word_mask`` (C, L) True on real tokens.
    Frame-to-word: each frame pools its word similarities with a softmax over words, then the
    frames are pooled with a softmax over frames (``frame_weights`` (B, C, T)); word-to-frame the
    same the other way round (``word_to_frame`` (B, C, L, T): each word's softmax over frames, supp.
    Fig. 11 averages it over a phrase's words); the two are averaged into ``similarity`` (B, C).
    Padding words are masked out of every softmax, so ``S_FW`` does not depend on padding.
    """
    f = F.normalize(frames, dim=-1)
    w = F.normalize(words, dim=-1)
    sim = torch.einsum("btd,cld->bctl", f, w)  # (B, C, T, L)
    m = word_mask[None, :, None, :]  # (1, C, 1, L)
    # frame -> words -> frames
    per_frame = (_masked_softmax(sim / temperature, m, dim=-1) * sim.masked_fill(~m, 0)).sum(-1)
    frame_weights = torch.softmax(per_frame / temperature, dim=-1)
    f2w = (frame_weights * per_frame).sum(-1)
    # word -> frames -> words
    word_to_frame = torch.softmax(sim / temperature, dim=2)  # (B, C, T, L): over frames
    per_word = (word_to_frame * sim).sum(2)  # (B, C, L)
    wm = word_mask[None]
    w2f = (_masked_softmax(per_word / temperature, wm, dim=-1) * per_word.masked_fill(~wm, 0)).sum(-1)
    return dict(similarity=0.5 * (f2w + w2f), frame_weights=frame_weights,
                word_to_frame=word_to_frame.transpose(2, 3))


def frame_word_similarity(frames: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                          temperature: float = 0.01) -> torch.Tensor:
    """``S_FW`` (Sec. 3.3.1): attention applied twice on ``S^_FW = F W^T`` (X-CLIP [38]); see
    :func:`frame_word_attention`. Returns (B, C)."""
    return frame_word_attention(frames, words, word_mask, temperature)["similarity"]


def combined_similarity(sims: Sequence[str], video: Optional[torch.Tensor], pose: Optional[torch.Tensor],
                        frames: Optional[torch.Tensor], sentence: torch.Tensor, words: torch.Tensor,
                        word_mask: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """Eq. (4): ``S = (S_VS + S_PS + S_FW) / 3`` over whichever terms are enabled (Table 6)."""
    terms = []
    for name in sims:
        if name == "vs":
            terms.append(action_similarity(video, sentence))
        elif name == "ps":
            terms.append(action_similarity(pose, sentence))
        elif name == "fw":
            terms.append(frame_word_similarity(frames, words, word_mask, temperature))
        else:
            raise KeyError(f"unknown similarity {name!r}; use 'vs', 'ps', 'fw'")
    if not terms:
        raise ValueError("sgmc.sims must name at least one of 'vs', 'ps', 'fw'")
    return torch.stack(terms).mean(dim=0)
