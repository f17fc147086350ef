_base_ = ['../_base_/models/pevl_vit_b16.py']
experiment = dict(name='table9_pose_form', table='Table 9', paper_dataset='Diving48', metric='top1')
# Pose encoder only ("P encoder" of Table 7), 48 frames; heatmaps are 112x112, rendered from the
# cached coordinates in the forward pass.
_p = dict(type='LinearHeadPeVL', modalities=['pose'], ucmr=dict(num_blocks=0))
variants = dict(
    heatmaps=dict(paper_top1=80.1, paper_gflops=311, paper_params_m=11,
                  model=dict(pose=dict(form='heatmap'), **_p)),
    coordinates=dict(paper_top1=82.6, paper_gflops=108, paper_params_m=11,
                     model=dict(pose=dict(form='coords'), **_p)),
)
