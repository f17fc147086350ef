"""The model side of a frozen CLIP: which parameters the optimiser sees, and frozen towers that
stay in eval mode whatever ``model.train()`` is told."""
from __future__ import annotations

from typing import Iterator

from torch import nn


class FrozenCLIPModel(nn.Module):
    """Base of a model that owns an open_clip model as ``self.clip`` and sets ``self.clip_frozen``
    (``model.clip.frozen``, the papers' default; ``False`` trains the towers too, for the demo)."""

    clip: nn.Module
    clip_frozen: bool = True

    def named_tunable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if p.requires_grad)

    def tunable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser should see (everything outside the frozen CLIP towers)."""
        return [p for _, p in self.named_tunable_parameters()]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.clip_frozen:
            self.clip.eval()  # frozen towers stay in eval mode; requires_grad never changes here
        return self
