"""Every switch of PeVL, PGVT and AIM, typed, with its default (the one place of each).

``configs/_base_/models/*.py`` state only what differs from these; an experiment's variants
override them; ``build_model`` checks a config against the schema of its ``type`` (an unknown key
at any depth, or a value of the wrong type, is an error naming it). ``docs/model.md`` maps each
key to the table of the paper that ablates it.

Shared by every model on a frozen CLIP: :class:`CLIPSettings` and :class:`FrozenCLIPSettings`
(the towers, the class and joint counts, the frame counts: 16 video + 48 pose frames, the papers'
setting for both PeVL and PGVT).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from stages.settings import Settings, SettingsError, field

from .pose_embedding import COORD_FRAMES, JOINT_EMBEDDINGS
from .sgmc import SIMILARITY_TERMS
from .text_encoder import PROMPT_FORMS
from .ucmr import BACKGROUND_READINGS, P2V_STARTS

POSE_FORMS = ("coords", "heatmap")  # Table 9 / PGVT Table 6: joint coordinates or rendered heatmaps
#: PeVL supp. Table 1 / PGVT Table 5: the frozen CLIP image encoder on pose tokens, or PoseFormer
POSE_ENCODERS = ("clip", "poseformer")
PEVL_MODALITIES = ("video", "pose", "text")
PGVT_MODALITIES = ("pose", "video")


def _prefix(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


#: (keys, the switch that leaves them idle): what :meth:`FrozenCLIPSettings.idle_keys` lists
IdleKeys = list[tuple[tuple[str, ...], str]]


@dataclass(frozen=True)
class CLIPSettings(Settings):
    what = "model setting"

    arch: str = field("ViT-B-16", help="open_clip architecture (ViT-B-16, ViT-L-14; PeVL-tiny for tests and the demo).")
    pretrained: Optional[str] = field("openai", help="open_clip pretrained tag; with pretrained_path it still names "
                                      "what the file holds; none: random weights.")
    pretrained_path: Optional[str] = field(None, help="A local weights file (docs/install.md lists the accepted forms); "
                                           "wins over pretrained.")
    cache_dir: Optional[str] = field(None, help="open_clip's download cache folder.")
    frozen: bool = field(True, help="Keep the CLIP towers frozen (the papers); false trains them too (the demo's "
                         "random tiny CLIP).")
    quick_gelu: Optional[bool] = field(None, help="Tower activation: none = the one the weights were trained with "
                                       "(QuickGELU for OpenAI's); true / false force it.")


@dataclass(frozen=True)
class FrozenCLIPSettings(Settings):
    """What every model on a frozen CLIP has."""

    what = "model setting"

    type: str = field("PeVL", help="The model: PeVL, LinearHeadPeVL, CLIPBaseline, PGVT.")
    clip: CLIPSettings = field(default_factory=CLIPSettings, help="The CLIP towers.")
    num_classes: int = field(48, help="Classes (set from the cache entry when a run builds the model).")
    num_joints: int = field(17, help="Joints per pose frame, of all its people: J = j x n (set from the entry's "
                            "skeleton and persons).")
    num_persons: int = field(1, help="People per pose frame (n), person-major in the joints (set from the entry's "
                             "persons).")
    num_pose_frames: int = field(48, help="Pose frames per clip (T; T_h in PGVT).")
    num_video_frames: int = field(16, help="Video frames per clip (T_v; T_l in PGVT).")

    def check(self, where: str = "", source_of=None) -> None:
        for k in ("num_classes", "num_joints", "num_persons", "num_pose_frames", "num_video_frames"):
            if getattr(self, k) < 1:
                raise SettingsError(f"{_prefix(where, k)} must be positive, got {getattr(self, k)}", _prefix(where, k))
        if self.num_joints % self.num_persons:
            k = _prefix(where, "num_joints")
            raise SettingsError(f"{k} = {self.num_joints} is not a whole number of joints for each of num_persons = "
                                f"{self.num_persons} people", k)

    def idle_keys(self, where: str = "model") -> IdleKeys:
        """The keys (under ``where``) that other switches leave idle, each group with the switch that
        does it: a ``-c`` on one changes nothing (stages/train/config.py, ``idle_overrides``)."""
        return []


# -- PeVL ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeVLAdapterSettings(Settings):
    what = "model setting"

    video: bool = field(True, help="Adapters in the video encoder (Table 8).")
    pose: bool = field(True, help="Adapters in the pose encoder (Table 8).")
    text: bool = field(True, help="Adapters in the text encoder (Table 8).")
    ratio: float = field(0.25, help="Bottleneck width / D of the vision adapters (AIM's 0.25).")
    text_ratio: float = field(0.5, help="Bottleneck width / D of the text adapters (Table 7's +6M per text: "
                              "docs/model.md).")
    mlp_scale: float = field(0.5, help="Scale s of the MLP adapter parallel to the MLP (AIM).")


@dataclass(frozen=True)
class PoseformerSettings(Settings):
    """PoseFormer (Zheng et al., ICCV 2021) as the pose encoder (``pose.encoder='poseformer'``):
    its sizes, input and weights. The defaults are the reference's (zczcwh/PoseFormer
    ``PoseTransformer``: 32 per joint, 4 + 4 blocks, 8 heads, MLP ratio 2; docs/model.md)."""

    what = "model setting"

    embed_dim: int = field(32, help="Spatial width per joint (the reference's embed_dim_ratio); the temporal "
                           "transformer's width is joints x this.")
    depth: int = field(4, help="Blocks of the spatial transformer, and of the temporal one.")
    heads: int = field(8, help="Attention heads in every block.")
    mlp_ratio: float = field(2.0, help="MLP hidden width / block width.")
    drop_path: float = field(0.1, help="Stochastic depth, rising linearly to this over each transformer's blocks "
                             "(the reference trains with 0.1).")
    score: bool = field(False, help="Also embed each joint's detection score (the reference embeds x, y only).")
    checkpoint: Optional[str] = field(None, help="A PoseFormer weights file (the reference's checkpoint, "
                                      "'model_pos', or a bare state dict), loaded strictly; none: random init, "
                                      "trained from scratch (no weights are to be had offline).")
    frozen: bool = field(False, help="Keep the loaded Poseformer frozen, only adapters and the token projection "
                         "train (the papers' pretrained row); needs checkpoint.")

    def check(self, where: str = "", source_of=None) -> None:
        for k in ("embed_dim", "depth", "heads"):
            if getattr(self, k) < 1:
                raise SettingsError(f"{_prefix(where, k)} must be positive, got {getattr(self, k)}", _prefix(where, k))
        if self.embed_dim % self.heads:
            raise SettingsError(f"{_prefix(where, 'embed_dim')}={self.embed_dim} is not a multiple of "
                                f"{_prefix(where, 'heads')}={self.heads}", _prefix(where, "embed_dim"))
        if self.mlp_ratio <= 0 or not 0 <= self.drop_path < 1:
            raise SettingsError(f"{_prefix(where, 'mlp_ratio')} must be > 0 and {_prefix(where, 'drop_path')} in "
                                f"[0, 1), got {self.mlp_ratio}, {self.drop_path}", _prefix(where, "drop_path"))
        if self.frozen and not self.checkpoint:
            raise SettingsError(f"{_prefix(where, 'frozen')}=True needs {_prefix(where, 'checkpoint')}: a frozen "
                                "randomly initialised Poseformer learns nothing", _prefix(where, "frozen"))


@dataclass(frozen=True)
class PoseTokenSettings(Settings):
    """How pose frames become tokens (shared by PeVL's pose encoder and PGVT's pose stream)."""

    what = "model setting"

    form: Literal[POSE_FORMS] = field("coords", help="Joint coordinates or 112x112 heatmaps (Table 9).")
    cls_token: bool = field(True, help="PGVT Sec. 3.2's per-frame CLS token (false: a frame is the mean of its "
                            "joint tokens).")
    heatmap_size: int = field(112, help="Heatmap side in pixels (form heatmap).")
    heatmap_sigma: float = field(2.0, help="Heatmap Gaussian sigma in pixels (form heatmap).")
    normalize: Literal[COORD_FRAMES] = field("crop", help="crop: coordinates as given (the papers); person: centred "
                                             "and scaled per clip.")
    motion: bool = field(False, help="Also embed each joint's velocity between pose frames.")
    score: bool = field(True, help="Embed each joint's detection score beside its x, y (form coords, the CLIP pose "
                        "encoder). The papers write the joints as T x N_p x 2 (false); with the score, a joint not "
                        "seen (its x, y zeroed) differs from one at the crop's corner. PoseFormer: "
                        "pose.poseformer.score.")
    embedding: Literal[JOINT_EMBEDDINGS] = field("shared", help="The joint MLP's first layer shared by all joints "
                                                 "(the papers) or one per joint.")
    encoder: Literal[POSE_ENCODERS] = field("clip", help="The pose encoder: clip (the frozen CLIP image encoder, the "
                                            "papers' choice) or poseformer (PeVL supp. Table 1, PGVT Table 5).")
    poseformer: PoseformerSettings = field(default_factory=PoseformerSettings, help="Poseformer's sizes and weights "
                                           "(pose.encoder='poseformer').")

    def check(self, where: str = "", source_of=None) -> None:
        if not self.score and (self.encoder == "poseformer" or self.form != "coords"):
            raise SettingsError(f"{_prefix(where, 'score')}=False is the CLIP pose encoder's joint coordinates' "
                                "(form coords); " + ("PoseFormer's is " + _prefix(where, 'poseformer.score')
                                                     if self.encoder == "poseformer" else
                                                     "heatmaps draw each joint weighted by its score"),
                                _prefix(where, "score"))
        if self.encoder != "poseformer":
            return
        # Poseformer takes joint coordinates and has no per-frame CLS token (the reference): a heatmap
        # form or a CLS token would be ignored, so they are refused
        for k, v, want in (("form", self.form, "coords"), ("cls_token", self.cls_token, False)):
            if v != want:
                raise SettingsError(f"{_prefix(where, k)}={v!r}: {_prefix(where, 'encoder')}='poseformer' takes joint "
                                    f"coordinates without a CLS token (set {_prefix(where, 'cls_token')}=False, "
                                    f"{_prefix(where, 'form')}='coords')", _prefix(where, k))


def _idle_pose_keys(pose: PoseTokenSettings, where: str) -> IdleKeys:
    """The ``pose.*`` keys (of the model at ``where``) the pose form or encoder leaves idle
    (pose_embedding.py, poseformer.py)."""
    def key(k: str) -> str:
        return _prefix(where, f"pose.{k}")

    idle = []
    if pose.encoder != "poseformer":
        idle.append((("pose.poseformer",), f"{key('encoder')}={pose.encoder!r}"))
    if pose.form == "heatmap":
        idle.append((("pose.normalize", "pose.motion", "pose.embedding"),
                     f"{key('form')}='heatmap' (joints drawn, not embedded)"))
    else:
        idle.append((("pose.heatmap_size", "pose.heatmap_sigma"), f"{key('form')}={pose.form!r}"))
    return idle


@dataclass(frozen=True)
class PeVLPoseSettings(PoseTokenSettings):
    temporal_attn: bool = field(True, help="T-Attn in the pose encoder (supp. Table 3).")

    def check(self, where: str = "", source_of=None) -> None:
        super().check(where, source_of)
        if self.encoder == "poseformer" and not self.temporal_attn:
            raise SettingsError(f"{_prefix(where, 'temporal_attn')}=False removes the CLIP pose encoder's T-Attn; "
                                "Poseformer's temporal transformer is pose.poseformer.depth blocks",
                                _prefix(where, "temporal_attn"))


@dataclass(frozen=True)
class TextSettings(Settings):
    what = "model setting"

    prompt: Literal[tuple(PROMPT_FORMS)] = field("label_prompt_type", help="Prompt form (supp. Table 4).")
    coarse_type: str = field("", help="The prompt's coarse action type (default: the cache entry's).")


@dataclass(frozen=True)
class UCMRSettings(Settings):
    what = "model setting"

    num_blocks: int = field(1, help="UCMR blocks (supp. Fig. 7); 0: none (Table 5 w/o UCMR).")
    p2v: bool = field(True, help="P2V, eq. 1 (Table 5).")
    v2p: bool = field(True, help="V2P, eq. 2 (Table 5).")
    refine_loss: bool = field(True, help="The refinement loss L_R, eq. 3 (Table 5).")
    background: Literal[BACKGROUND_READINGS] = field("grouping", help="V2P's background token: grouping (supp. Fig. "
                                                     "9) or kept (eq. 2 literally); docs/model.md.")
    p2v_start: Literal[P2V_STARTS] = field("identity", help="P2V at step 0: identity (its two residual branches "
                                          "behind zero-initialised tanh gates, so the video feature starts as "
                                          "CLIP's, as V2P and the adapters start) or block (block 12's attention "
                                          "and MLP applied once more, the plug-in block read literally).")
    refine_reduction: Literal["sum", "mean"] = field("sum", help="Eq. 3 over the batch: sum (the equation's "
                                                     "sum over i, what lambda_R = 0.1 weighs) or mean (1/B of it); "
                                                     "each term averages its two directions.")

    def check(self, where: str = "", source_of=None) -> None:
        if self.num_blocks < 0:
            raise SettingsError(f"{_prefix(where, 'num_blocks')} must be >= 0, got {self.num_blocks}")


@dataclass(frozen=True)
class SGMCSettings(Settings):
    what = "model setting"

    sims: tuple[Literal[SIMILARITY_TERMS], ...] = field(SIMILARITY_TERMS, help="Similarity terms of eq. 4 (Table 6).")
    loss: Literal["semantic", "vanilla"] = field("semantic", help="Semantic guided (eqs. 5-6) or vanilla "
                                                 "contrastive loss (Table 6).")
    fw_temperature: float = field(0.01, help="Temperature of S_FW's attention over the frame-word matrix.")


@dataclass(frozen=True)
class TemperatureSettings(Settings):
    """The learnable temperatures: the text similarity's (``logit_scale``) and eq. 3's."""

    what = "model setting"

    text_init: Optional[float] = field(None, help="1 / tau of the text similarity at step 0; none: CLIP's own "
                                       "logit scale (100 for OpenAI's weights).")
    max_scale: float = field(100.0, help="The largest 1 / tau (CLIP's clamp).")
    clamp: Literal["projected", "forward"] = field("projected", help="projected: a scale above max_scale is set "
                                                  "back to it before use (CLIP's training clamps the parameter), "
                                                  "so its gradient is not zero there and it can move; forward: "
                                                  "clamped inside the loss, so at or above max_scale the gradient "
                                                  "is exactly 0 (OpenAI's weights start there: it never moves).")

    def check(self, where: str = "", source_of=None) -> None:
        if self.max_scale <= 0 or (self.text_init is not None and self.text_init <= 0):
            raise SettingsError(f"{_prefix(where, 'max_scale')} and text_init must be positive")


@dataclass(frozen=True)
class PeVLSettings(FrozenCLIPSettings):
    """PeVL and its text-free (LinearHeadPeVL) and baseline (CLIPBaseline) variants."""

    modalities: tuple[Literal[PEVL_MODALITIES], ...] = field(PEVL_MODALITIES, help="Encoders (Table 7).")
    adapters: PeVLAdapterSettings = field(default_factory=PeVLAdapterSettings, help="Adapters (Table 8).")
    pose: PeVLPoseSettings = field(default_factory=PeVLPoseSettings, help="The pose encoder.")
    text: TextSettings = field(default_factory=TextSettings, help="The text encoder's prompt.")
    ucmr: UCMRSettings = field(default_factory=UCMRSettings, help="The UCMR block (Table 5).")
    fusion: Literal["sgmc", "concat"] = field("sgmc", help="SGMC (eq. 4) or concatenation (Tables 4, 7).")
    sgmc: SGMCSettings = field(default_factory=SGMCSettings, help="SGMC (Table 6).")
    lambda_r: float = field(0.1, help="Weight of the refinement loss (Sec. 3.4).")
    temperature: TemperatureSettings = field(default_factory=TemperatureSettings, help="The learnable "
                                             "temperatures (text similarity, eq. 3).")
    train_proj: bool = field(True, help="Train copies of CLIP's projections (Table 4 baseline).")

    def check(self, where: str = "", source_of=None) -> None:
        super().check(where, source_of)
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise SettingsError(f"{_prefix(where, 'modalities')} must be a non-empty subset of {PEVL_MODALITIES}, "
                                f"got {list(self.modalities)}")

    def idle_keys(self, where: str = "model") -> IdleKeys:
        """The keys other switches leave idle (what pevl.py's constructor does not read)."""
        mods = list(self.modalities)
        said = f"{_prefix(where, 'modalities')}={mods}" + (f" ({_prefix(where, 'type')}={self.type})"
                                                           if self.type != "PeVL" else "")
        idle = []
        # eq. 3's temperature reads temperature.max_scale and .clamp too (the text similarity's and its)
        refines = ("video" in mods and "pose" in mods and self.ucmr.num_blocks > 0 and self.ucmr.refine_loss
                   and (self.ucmr.p2v or self.ucmr.v2p))
        if "text" not in mods:
            idle.append((("text", "sgmc", "fusion", "adapters.text", "adapters.text_ratio", "temperature.text_init")
                         + (() if refines else ("temperature.max_scale", "temperature.clamp")), said))
        elif self.fusion == "concat":
            idle.append((("sgmc",), f"{_prefix(where, 'fusion')}='concat' (sgmc.* is eq. 4's fusion)"))
        if "video" not in mods:
            idle.append((("adapters.video",), said))
        if "pose" not in mods:
            idle.append((("pose", "adapters.pose"), said))
        else:
            idle += _idle_pose_keys(self.pose, where)
        if not ("video" in mods and "pose" in mods):
            idle.append((("ucmr", "lambda_r"), said + ": UCMR joins video and pose"))
        elif self.ucmr.num_blocks == 0:
            idle.append((("ucmr.p2v", "ucmr.v2p", "ucmr.refine_loss", "ucmr.background", "ucmr.p2v_start",
                          "ucmr.refine_reduction", "lambda_r"), f"{_prefix(where, 'ucmr.num_blocks')}=0"))
        elif not self.ucmr.refine_loss:
            idle.append((("lambda_r", "ucmr.refine_reduction"), f"{_prefix(where, 'ucmr.refine_loss')}=False"))
        return idle


# -- PGVT / AIM ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PGVTAdapterSettings(Settings):
    what = "model setting"

    ratio: float = field(0.25, help="Bottleneck width / D of every adapter.")
    s_pose: float = field(0.5, help="Eq. 5's s_P (AIM's s = 0.5).")
    s_video: float = field(0.5, help="Eq. 5's s_Z.")


@dataclass(frozen=True)
class PGVTBlockSettings(Settings):
    what = "model setting"

    temporal: bool = field(True, help="The T module, eq. 1 (Table 4 (4)).")
    refine_pose: bool = field(True, help="The R-Adapter's pose stream (Table 4 (6i)).")
    refine_video: bool = field(True, help="The R-Adapter's video stream (Table 4 (6ii)).")
    bottleneck: bool = field(True, help="The R-Adapter's bottlenecks (docs/model.md).")


@dataclass(frozen=True)
class AIMSettings(Settings):
    what = "model setting"

    temporal: bool = field(True, help="AIM's temporal adaptation (T-Attn + T-adapter).")


@dataclass(frozen=True)
class HeadSettings(Settings):
    what = "model setting"

    dropout: float = field(0.5, help="Dropout before the linear classifier (AIM's I3D head).")


@dataclass(frozen=True)
class PGVTSettings(FrozenCLIPSettings):
    """PGVT, and AIM's baseline (``blocks='aim'``)."""

    type: str = field("PGVT", help="The model: PGVT.")
    modalities: tuple[Literal[PGVT_MODALITIES], ...] = field(PGVT_MODALITIES, help="Streams (Table 4).")
    blocks: Literal["pgvt", "aim"] = field("pgvt", help="PGVT blocks (both modalities) or one AIM stream per "
                                           "modality (Table 4 (1)-(3)).")
    adapters: PGVTAdapterSettings = field(default_factory=PGVTAdapterSettings, help="Adapters.")
    pgvt: PGVTBlockSettings = field(default_factory=PGVTBlockSettings, help="PGVT blocks (Table 4).")
    aim: AIMSettings = field(default_factory=AIMSettings, help="AIM streams.")
    pose: PoseTokenSettings = field(default_factory=PoseTokenSettings, help="Pose tokens (Table 6).")
    head: HeadSettings = field(default_factory=HeadSettings, help="The classifier.")

    def check(self, where: str = "", source_of=None) -> None:
        super().check(where, source_of)
        mods = list(self.modalities)
        if not mods or len(set(mods)) != len(mods):
            raise SettingsError(f"{_prefix(where, 'modalities')} must be a non-empty subset of {PGVT_MODALITIES}, "
                                f"got {mods}")
        if self.pose.encoder == "poseformer" and self.blocks == "pgvt" and not self.pgvt.temporal:
            raise SettingsError(f"{_prefix(where, 'pgvt.temporal')}=False removes the T-Attn of the CLIP pose "
                                "stream; with pose.encoder='poseformer' the temporal modelling is Poseformer's own")
        if self.blocks == "pgvt" and len(mods) != 2:
            raise SettingsError(f"{_prefix(where, 'blocks')}='pgvt' needs both modalities; one modality runs AIM's "
                                "blocks (blocks='aim')")

    def idle_keys(self, where: str = "model") -> IdleKeys:
        """The keys other switches leave idle (what pgvt.py's constructor does not read)."""
        mods = list(self.modalities)
        idle = [(("pgvt",) if self.blocks == "aim" else ("aim",), f"{_prefix(where, 'blocks')}={self.blocks!r}")]
        if "pose" not in mods:
            idle.append((("pose",), f"{_prefix(where, 'modalities')}={mods}"))
        else:
            idle += _idle_pose_keys(self.pose, where)
        return idle
