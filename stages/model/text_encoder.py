"""Text encoder g_t: CLIP's text transformer with adapters, and the prompt forms of supp. Table 4."""
from __future__ import annotations

import torch
from torch import nn

from .adapters import adapted_block, adapter_stack

#: Prompt forms ablated in supp. Table 4. PeVL's default appends the coarse action type (Sec. 3.1).
PROMPT_FORMS = {
    "label": "{label}",
    "label_prompt": "{label}, a video of action",
    "label_prompt_type": "{label}, a video of {coarse_type} action",
}


def build_prompt(label: str, coarse_type: str = "", form: str = "label_prompt_type") -> str:
    """``"{label}, a video of {coarse type} action"`` (Sec. 3.1) or a supp. Table 4 ablation."""
    try:
        template = PROMPT_FORMS[form]
    except KeyError:
        raise KeyError(f"unknown prompt form {form!r}; known: {sorted(PROMPT_FORMS)}") from None
    if "{coarse_type}" in template and not coarse_type.strip():  # (it read as label_prompt, reported as this form)
        raise ValueError(f"the prompt form {form} ({template!r}) needs a coarse action type and none was given: set "
                         "model.text.coarse_type, or model.text.prompt=label_prompt")
    return template.format(label=label.strip(), coarse_type=coarse_type.strip())


class TextEncoder(nn.Module):
    """CLIP text transformer with two adapters per block, like the video encoder (supp. Fig. 2c).

    Returns the sentence feature ``S`` (the EOT token) and word features ``W`` (every token), both
    through ``ln_final`` and the text projection, and the word mask (non-padding tokens: open_clip
    pads with id 0), which SGMC uses so padding words take no part in ``S_FW``.
    The frozen text tower is owned by :class:`PeVL`.
    """

    def __init__(self, clip: nn.Module, adapters: bool = True, ratio: float = 0.25,
                 mlp_scale: float = 0.5, train_proj: bool = True):
        super().__init__()
        self._clip = [clip]
        width = clip.token_embedding.embedding_dim
        n = len(clip.transformer.resblocks)
        self.mlp_scale = mlp_scale
        self.attn_adapters = adapter_stack(width, n, ratio, skip=True) if adapters else None
        self.mlp_adapters = adapter_stack(width, n, ratio, skip=False) if adapters else None
        tp = clip.text_projection
        w = tp.weight.detach().T if isinstance(tp, nn.Linear) else tp.detach()
        # A trainable copy: Table 4's baseline trains exactly these projections.
        self.proj = nn.Parameter(w.clone(), requires_grad=train_proj)

    @property
    def clip(self) -> nn.Module:
        return self._clip[0]

    def forward(self, tokens: torch.Tensor):
        """(C, L) token ids -> S (C, E), W (C, L, E), word_mask (C, L) bool."""
        clip = self.clip
        x = clip.token_embedding(tokens) + clip.positional_embedding
        for i, blk in enumerate(clip.transformer.resblocks):
            x = adapted_block(
                blk, x,
                None if self.attn_adapters is None else self.attn_adapters[i],
                None if self.mlp_adapters is None else self.mlp_adapters[i],
                self.mlp_scale, is_causal=True,
            )
        x = clip.ln_final(x) @ self.proj
        eot = tokens.argmax(dim=-1)  # CLIP's EOT id is the largest in the vocabulary
        sentence = x[torch.arange(x.shape[0], device=x.device), eot]
        return sentence, x, tokens != 0


def phrase_token_spans(tokenizer, prompt: str) -> list[tuple[str, int, int]]:
    """The comma-separated phrases of a prompt and where their tokens sit in its tokenised form
    (``[SOT] phrase , phrase , ... [EOT]``): ``(phrase, start, end)`` with token positions
    ``start <= i < end`` (supp. Fig. 11 averages the word attention over a phrase). CLIP's BPE
    encodes words independently and a comma is a token of its own, so the spans are found by
    encoding each phrase alone; the result is checked against the full encoding (ValueError if a
    tokenizer does not split that way)."""
    encode = tokenizer.tokenizer.encode if hasattr(tokenizer, "tokenizer") else tokenizer.encode
    phrases = [p.strip() for p in prompt.split(",") if p.strip()]
    comma = encode(",")
    spans, pos, flat = [], 1, []
    for i, p in enumerate(phrases):
        ids = encode(p)
        spans.append((p, pos, pos + len(ids)))
        flat += ids
        pos += len(ids)
        if i < len(phrases) - 1:
            flat += comma
            pos += len(comma)
    if flat != encode(prompt):
        raise ValueError(f"cannot split {prompt!r} into phrase tokens with this tokenizer")
    return spans
