"""SGMC multi-level contrastive association (Sec. 3.3.1): S_VS, S_PS, S_FW and eq. (4)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def action_similarity(x: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
    """``S_VS = sim(V, S)`` / ``S_PS = sim(P, S)``: cosine, (B, E) x (C, E) -> (B, C)."""
    return F.normalize(x, dim=-1) @ F.normalize(sentence, dim=-1).T


def _masked_softmax(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    return x.masked_fill(~mask, float("-inf")).softmax(dim=dim)


def frame_word_similarity(frames: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                          temperature: float = 0.01) -> torch.Tensor:
    """``S_FW`` (Sec. 3.3.1): attention applied twice on ``S^_FW = F W^T`` (X-CLIP [38]).

    ``frames`` (B, T, E), ``words`` (C, L, E), ``word_mask`` (C, L) True on real tokens.
    Frame-to-word: each frame pools its word similarities with a softmax over words, then the
    frames are pooled with a softmax over frames; word-to-frame the same the other way round;
    the two are averaged. Padding words are masked out of every softmax, so ``S_FW`` does not
    depend on padding. Returns (B, C).
    """
    f = F.normalize(frames, dim=-1)
    w = F.normalize(words, dim=-1)
    sim = torch.einsum("btd,cld->bctl", f, w)  # (B, C, T, L)
    m = word_mask[None, :, None, :]  # (1, C, 1, L)
    # frame -> words -> frames
    per_frame = (_masked_softmax(sim / temperature, m, dim=-1) * sim.masked_fill(~m, 0)).sum(-1)
    f2w = (torch.softmax(per_frame / temperature, dim=-1) * per_frame).sum(-1)
    # word -> frames -> words
    per_word = (torch.softmax(sim / temperature, dim=2) * sim).sum(2)  # (B, C, L)
    wm = word_mask[None]
    w2f = (_masked_softmax(per_word / temperature, wm, dim=-1) * per_word.masked_fill(~wm, 0)).sum(-1)
    return 0.5 * (f2w + w2f)


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
