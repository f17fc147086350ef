# PeVL on CLIP ViT-B/16 (the paper's main setting). Every switch and its default is in
# stages/model/settings.py (PeVLSettings; docs/model.md maps each to its table): a config states only
# what differs. `pipeline train --exp NAME --print-config` shows a variant's whole resolved config.
model = dict(type='PeVL')
