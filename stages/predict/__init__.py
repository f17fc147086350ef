"""``pipeline predict``: a trained model on videos that are in no dataset.

* :mod:`.trained`: which run a checkpoint comes from (its recorded run config and training entry,
  or what the user names), and its model with the checkpoint's weights;
* :mod:`.inputs`: the videos the command names (files, folders);
* :mod:`.predictor`: stage one on the fly with the training entry's settings, stage two's items
  and the model's test protocol, pipelined over many videos;
* :mod:`.windows`: a long video as windows sliding along it (a timeline of labels);
* :mod:`.reuse`: poses of a video already in the cache, found by its content;
* :mod:`.draw`: the pictures (frames with poses and labels, a timeline);
* :mod:`.saved`: each video's result beside its pictures, from which a killed run continues.
"""
from stages.predict.inputs import VideoInput, find_videos  # noqa: F401
from stages.predict.predictor import PredictOptions, Predictor, VideoResult  # noqa: F401
from stages.predict.trained import CheckpointRecordMissing, TrainedRun, resolve_run  # noqa: F401
