"""Stage two's data settings (``data`` of a run config): which cache entry, and how items are made.

The entry is named by what stage one was asked for (:mod:`stages.extract.request`): the dataset,
its adapter options, the pose source and its options, the stage-one settings. Each of those is
checked by its owner's schema (the adapter's, the pose source's, :class:`ExtractSettings`), so a
misspelt option fails here, naming where it came from. The rest says how items are made from the
entry (splits, loader workers, augmentation).

The one place of these defaults; ``configs/_base_/datasets/*.py`` state only what differs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from stages.data.views import TEST_VIEWS, TRAIN_CROPS
from stages.extract.settings import ExtractSettings
from stages.settings import Partial, Settings, SettingsError, field


@dataclass(frozen=True)
class DataSettings(Settings):
    what = "data setting"

    dataset: Optional[str] = field(None, help="Dataset name (a registered adapter: demo, gym99, gym288, diving48, "
                                   "haa500, toyota_smarthome, kinetics400, custom); default: the experiment's paper "
                                   "dataset.")
    root: Optional[Path] = field(None, help="The raw dataset's root: only to re-check the entry's sources "
                                 "(--check-sources) and in the extract command a missing entry names. Training "
                                 "never reads it.")
    pose_source: Optional[str] = field(None, help="The pose source stage one used (hrnet, dataset, pkl:PATH); "
                                       "default: the dataset's own choice.")
    pose_options: dict = field(default_factory=dict, help="The pose source's options stage one used (e.g. "
                               "checkpoint=/w/hrnet.pth), as `pipeline extract --pose-option` takes them.")
    extract: Partial[ExtractSettings] = field(default_factory=dict, help="Stage-one settings of the entry "
                                              "(num_frames, short_side, grid_cell, frames_codec, ...); unset: "
                                              "the dataset's defaults.")
    dataset_options: dict = field(default_factory=dict, help="The adapter options stage one used (`pipeline "
                                  "extract -o KEY=VALUE`).")
    train_split: str = field("train", help="Split the model trains on.")
    test_split: str = field("test", help="Split validation and the final evaluation use.")
    num_workers: int = field(4, help="DataLoader worker processes per training process.")
    decode_on_device: bool = field(False, help="With a --frames-codec jpeg entry, decode, crop and flip the JPEG "
                                   "frames on the GPU (nvjpeg) instead of in the loader workers; without a CUDA "
                                   "device: a notice, CPU decoding.")
    views_on_device: bool = field(True, help="On a CUDA device, the loader ships the rows of the frames each "
                                  "item's views span as stored, and the device cuts, resizes and flips them (the "
                                  "workers do no pixel work); false, or without a CUDA device: the workers do.")
    flip_prob: float = field(0.5, help="Probability of the training horizontal flip (frames, joints and grids "
                             "together; left/right joints swap).")
    random_pose_offsets: bool = field(True, help="Training pose frames: one random frame per segment (the "
                                      "papers' sampling); false: segment middles, as at test.")
    candidate_frames: Literal["random", "middle"] = field("random", help="Training video frames of an entry with "
                                                         "K > 1 candidates per segment (extract.frames_per_segment): "
                                                         "one drawn per segment each epoch (TSN / mmaction2 "
                                                         "sampling), or the middle as at test (what K = 1 gives).")
    train_crop: Literal[TRAIN_CROPS] = field("random_resized", help="Training crop, then resized to the model's "
                                            "size and flipped: random_resized (mmaction2's RandomResizedCrop, "
                                            "AIM's recipe), multi_scale (MultiScaleCrop, X-CLIP's) or fixed_size (a "
                                            "crop of the model's size, no resize); stages/data/views.py.")
    crop_area: tuple[float, float] = field((0.08, 1.0), help="random_resized: the box's area as a fraction of "
                                          "the frame's (mmaction2's default, AIM's).")
    crop_aspect: tuple[float, float] = field((0.75, 4 / 3), help="random_resized: the box's width / height, "
                                            "log-uniform.")
    crop_scales: tuple[float, ...] = field((1.0, 0.875, 0.75, 0.66), help="multi_scale: box sides as fractions of "
                                          "the short side (X-CLIP's).")
    test_views: Literal[TEST_VIEWS] = field("resize_three_crop", help="Test views: resize_three_crop (short side "
                                           "resized to the model's size, three crops: AIM's protocol, which the "
                                           "paper follows) or three_crop (three crops of the cached frames).")

    def check(self, where: str = "", source_of=None) -> None:
        """The dataset is registered; its options, the pose source's options and the stage-one
        settings pass their owners' schemas (stored converted)."""
        from stages.datasets.factory import adapter_class
        from stages.extract.pose.factory import check_pose_options
        from stages.extract.request import default_pose_source

        src = source_of or (lambda _k: None)
        at = (lambda k: f"{where}.{k}" if where else k)
        if self.num_workers < 0:
            raise SettingsError(f"{at('num_workers')} must be >= 0, got {self.num_workers}", at("num_workers"))
        if not 0 <= self.flip_prob <= 1:
            raise SettingsError(f"{at('flip_prob')} is a probability, in [0, 1]; got {self.flip_prob}", at("flip_prob"))
        if not 0 < self.crop_area[0] <= self.crop_area[1] <= 1:
            raise SettingsError(f"{at('crop_area')} must be (low, high) with 0 < low <= high <= 1, got {self.crop_area}",
                                at("crop_area"))
        if not 0 < self.crop_aspect[0] <= self.crop_aspect[1]:
            raise SettingsError(f"{at('crop_aspect')} must be (low, high) with 0 < low <= high, got {self.crop_aspect}",
                                at("crop_aspect"))
        if not self.crop_scales or not all(0 < x <= 1 for x in self.crop_scales):
            raise SettingsError(f"{at('crop_scales')} must be fractions in (0, 1], got {self.crop_scales}",
                                at("crop_scales"))
        if self.dataset is None:
            return  # resolved by the caller (the experiment's dataset) and checked again then
        try:
            cls = adapter_class(self.dataset)
        except KeyError as e:
            raise SettingsError(f"{at('dataset')}: {e.args[0]}", at("dataset"), src(at("dataset")) or "") from None
        opts = cls.Options.from_dict(self.dataset_options, where=at("dataset_options"), source_of=src)
        object.__setattr__(self, "dataset_options", {k: getattr(opts, k) for k in self.dataset_options})
        # the stage-one settings resolved (the dataset's defaults filled in): what the entry holds
        from stages.extract.request import resolve_settings

        full = resolve_settings(self.dataset, self.extract, where=at("extract"), source_of=src)
        object.__setattr__(self, "extract", full.to_dict())
        spec = self.pose_source or default_pose_source(self.dataset)
        try:
            check_pose_options(spec, self.pose_options, source=src(at("pose_options")) or "the config",
                               where=at("pose_options"))
        except KeyError as e:
            raise SettingsError(f"{at('pose_source')}: {e.args[0]}", at("pose_source")) from None

    def entry_request(self) -> Any:
        """The :class:`~stages.extract.request.EntryRequest` of the entry these settings read."""
        from stages.extract.request import entry_request

        if self.dataset is None:
            raise SettingsError("data.dataset is not set: name a dataset (--dataset, or data.dataset in the experiment file)")
        return entry_request(self.dataset, pose_source=self.pose_source, pose_options=self.pose_options,
                             settings=self.extract, dataset_options=self.dataset_options,
                             pose_options_source="data.pose_options", dataset_options_source="data.dataset_options")
