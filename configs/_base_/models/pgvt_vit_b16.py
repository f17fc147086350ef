# PGVT on CLIP ViT-B/16 (PGVT paper, Diving48 setting: 48 pose + 16 video frames). Every switch and its
# default is in stages/model/settings.py (PGVTSettings; docs/model.md, "PGVT"): a config states only what
# differs. `pipeline train --exp NAME --print-config` shows a variant's whole resolved config.
model = dict(type='PGVT')
