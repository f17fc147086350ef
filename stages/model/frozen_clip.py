"""The base of every model on a frozen open_clip CLIP (PeVL, PGVT, AIM): its settings checked, the
towers loaded and frozen, which parameters the optimiser sees, and frozen towers that stay in eval
mode whatever ``model.train()`` is told."""
from __future__ import annotations

from typing import Any, ClassVar, Iterator, Mapping, Optional

from torch import nn

from .clip_loader import freeze, load_clip
from .settings import FrozenCLIPSettings


class FrozenCLIPModel(nn.Module):
    """Owns an open_clip model as ``self.clip`` (``model.clip.frozen``: the papers keep it frozen;
    ``False`` trains the towers too, for the demo's random tiny CLIP).

    ``cfg``: a mapping (checked by :attr:`settings_class`, missing keys take their defaults) or a
    settings instance. ``self.settings`` is the typed config, ``self.cfg`` the same as plain Python.
    """

    #: the model's config schema (a :class:`FrozenCLIPSettings` subclass)
    settings_class: ClassVar[type] = FrozenCLIPSettings
    #: (regular expression matched at the start of a parameter name, optimiser group): the first
    #: match names a tunable parameter's group (stages/train/param_groups.py; none: an error)
    param_group_rules: ClassVar[tuple[tuple[str, str], ...]] = ((r"clip\.", "clip"),)
    clip: nn.Module
    clip_frozen: bool = True

    def __init__(self, cfg: Optional[Any] = None):
        super().__init__()
        s = cfg if isinstance(cfg, self.settings_class) else self.settings_class.from_dict(
            dict(cfg or {}) if isinstance(cfg, Mapping) or cfg is None else cfg, where="model")
        self.settings = s
        self.cfg: dict = s.to_dict()
        c = s.clip
        clip = load_clip(c.arch, c.pretrained, c.pretrained_path, c.cache_dir, quick_gelu=c.quick_gelu)
        self.clip_frozen = bool(c.frozen)
        freeze(clip, self.clip_frozen)
        self.clip = clip

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
