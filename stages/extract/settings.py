"""Stage one's settings: what every cached clip of an entry is made with (each one enters its key).

The one place of their defaults: ``pipeline extract``'s flags, the dataset configs' ``extract``
and a dataset's own defaults (:attr:`DatasetAdapter.extract_defaults`, e.g. the demo's short side
of 128) only state what differs. Light on import (the CLI's help reads it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from cache.frames_codecs import DEFAULT_FRAMES_CODEC, frames_codec, frames_codec_names
from cache.frames_codecs.jpeg import DEFAULT_JPEG_QUALITY
from cache.layout import COUNT_SETTINGS, recorded_count
from stages.settings import Settings, SettingsError, field


@dataclass(frozen=True)
class ExtractSettings(Settings):
    """Stage-one settings: every field changes the entry's bytes, so all go into its key."""

    what = "stage-one setting"

    num_frames: int = field(16, help="Segments per clip (T_v), the video frames a model reads: "
                                     "frames_per_segment candidates of each are cached.")
    frames_per_segment: int = field(3, help="Candidate frames cached per segment (K), spread evenly inside it, the "
                                    "segment middle among them: training draws one per segment each epoch, "
                                    "evaluation takes the middle (1: the middles only, a third of the bytes; "
                                    "docs/benchmarks.md).")
    persons: int = field(1, help="People kept per frame (n): the n best tracks of a clip by mean score, their joints "
                         "person-major in one joint axis (n x V joints; a missing person's have score 0). From a "
                         "skeleton file's M persons, HRNet on a --person-detector's boxes linked over frames, or a "
                         "dataset's poses of every person (the demo with -o bystanders=F); docs/extraction.md.")
    short_side: int = field(256, help="Short side of cached frames in pixels (rounded to the grid cell).")
    grid_cell: int = field(16, help="Mask-grid cell in pixels; must equal the patch size of the ViT the grids "
                                    "serve (16 for ViT-B/16, 14 for ViT-L/14).")
    frames_codec: str = field(DEFAULT_FRAMES_CODEC, help="How cached frames are stored: "
                              + "; ".join(f"{n}: {frames_codec(n).help}" for n in frames_codec_names()) + ".")
    min_frames: int = field(2, help="A clip with fewer decoded frames is recorded as failed.")
    jpeg_quality: int = field(DEFAULT_JPEG_QUALITY, help="JPEG quality of --frames-codec jpeg (1..100).")

    def check(self, where: str = "", source_of=None) -> None:
        """Run by :meth:`from_dict` (every command's way in), with ``where`` the settings' place
        (``data.extract`` in a run config): each error names the dotted key, which the extract
        command turns into its flag."""
        at = (lambda k: f"{where}.{k}" if where else k)
        for name in ("num_frames", "frames_per_segment", "persons", "short_side", "grid_cell", "min_frames"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{at(name)} must be positive, got {getattr(self, name)}", at(name))
        if not 1 <= self.jpeg_quality <= 100:
            raise SettingsError(f"{at('jpeg_quality')} must be in 1..100, got {self.jpeg_quality}", at("jpeg_quality"))
        try:
            frames_codec(self.frames_codec).check_settings(self.to_dict())
        except ValueError as e:
            raise SettingsError(f"{at('frames_codec')}: {e}", at("frames_codec")) from None

    def as_dict(self) -> dict:
        """The settings as the entry key hashes them: a codec's own settings only with that codec
        (``jpeg_quality`` changes no byte of a raw entry, so not its key either), and
        ``frames_per_segment`` and ``persons`` only when not 1 (one candidate per segment, one person
        per frame store exactly the bytes of entries made before those settings existed, so their
        key stays)."""
        d = self.to_dict()
        for name in COUNT_SETTINGS:
            if d.get(name) == 1:
                d.pop(name)
        own = set(frames_codec(self.frames_codec).key_settings)
        for name in _CODEC_SETTINGS:
            if name not in own:
                d.pop(name, None)
        return d

    @classmethod
    def of_entry(cls, settings: Mapping[str, Any], where: str = "entry settings") -> "ExtractSettings":
        """The settings an entry was made with, from what it records (:meth:`as_dict`: no
        ``frames_per_segment`` means one candidate per segment, not today's default; no ``persons``
        one person)."""
        known = set(cls.keys())
        d = {k: v for k, v in settings.items() if k in known}
        d.update({name: recorded_count(settings, name) for name in COUNT_SETTINGS})
        return cls.from_dict(d, where=where)


#: settings that belong to some codec (they enter the key only with that codec)
_CODEC_SETTINGS = tuple(sorted({s for n in frames_codec_names() for s in frames_codec(n).key_settings}))


def resolve_extract_settings(dataset_defaults: Mapping[str, Any], overrides: Optional[Mapping[str, Any]],
                             where: str = "extract", source_of=None) -> ExtractSettings:
    """The schema's defaults, then a dataset's own (``dataset_defaults``, which may also name its
    default pose source: not a setting), then ``overrides`` (None values: not given)."""
    base = {k: v for k, v in dict(dataset_defaults).items() if k != "pose_source"}
    base.update({k: v for k, v in dict(overrides or {}).items() if v is not None})
    kw = {"where": where}
    if source_of is not None:
        kw["source_of"] = source_of
    return ExtractSettings.from_dict(base, **kw)
