# Toyota-Smarthome, cross-subject protocol (31 classes); the dataset's own 13-joint LCR-Net poses
# (pose_source None = 'dataset'). Cross-view: dataset_options=dict(protocol='cv1') or 'cv2' (19 classes).
_base_ = ['./real_dataset.py']
data = dict(dataset='toyota_smarthome')
