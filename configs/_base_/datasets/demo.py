# The generated demo dataset (docs/demo.md): 10 classes, 240 train / 80 val clips, poses shipped,
# and what training on it needs, as an overlay: `pipeline train --exp ANY --dataset demo` applies this
# whole file over the experiment's variants (its data, the demo's CPU schedule, and the model keys
# below; each variant keeps its other switches), and the demo experiments inherit it.
_base_ = ['../schedules/demo_cpu.py']
data = dict(
    dataset='demo',
    # the demo's entry: 16 frames on a 16-pixel grid (variants asking for 32 frames or a 14-pixel
    # grid get these: the demo's tiny CLIP reads 16-pixel patches)
    extract=dict(num_frames=16, grid_cell=16),
    test_split='val',
    num_workers=1,
    # no horizontal flip: the demo has a left/right class pair (kick with the right leg twice vs
    # with the left leg twice), which a mirror image turns into each other
    flip_prob=0.0,
)
model = dict(
    # The project's tiny open_clip model (stages/model/PeVL-tiny.json: 112 px, patch 16, width 64,
    # 2 layers) with RANDOM weights: no pretrained weights exist offline, so there is nothing to
    # preserve and the towers train too (real CLIP stays frozen, as in the papers).
    clip=dict(arch='PeVL-tiny', pretrained=None, frozen=False),
    num_video_frames=16,    # all cached frames (T_v)
    num_pose_frames=48,     # the paper's T: the demo's aliasing pairs need it (docs/demo.md)
    # Pose enters as skeleton action models feed it: coordinates relative to the person, each
    # joint's velocity and a first embedding layer per joint (docs/demo.md)
    pose=dict(normalize='person', motion=True, embedding='per_joint'),
)
