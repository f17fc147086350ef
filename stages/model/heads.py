"""Fusion and classification heads for the ablation variants (Tables 4 and 7)."""
from __future__ import annotations

import torch
from torch import nn


class ConcatFusion(nn.Module):
    """Concatenated video and pose embeddings mapped back to the joint space (Table 4 "+ Pose",
    Table 7 "V+P+T"). Initialised to the average of the two, so CLIP's alignment is kept at start."""

    def __init__(self, dim: int, parts: int = 2):
        super().__init__()
        self.linear = nn.Linear(parts * dim, dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.cat([torch.eye(dim) / parts] * parts, dim=1))
            self.linear.bias.zero_()

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.linear(torch.cat(feats, dim=-1))


class LinearHead(nn.Module):
    """Linear classifier on the concatenated clip features, for variants without text (Table 7
    V, P, V+P), trained with cross-entropy."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
