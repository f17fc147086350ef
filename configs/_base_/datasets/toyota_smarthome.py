# Toyota-Smarthome, cross-subject protocol (31 classes); the dataset's own 13-joint LCR-Net poses (its
# default pose source). Cross-view: dataset_options=dict(protocol='cv1') or 'cv2' (19 classes).
data = dict(dataset='toyota_smarthome')
