"""The lab-shared, content-addressed Zarr cache of stage-one outputs.

``CacheStore`` is a cache root (lists, finds, verifies, collects entries); ``CacheEntry`` is one
dataset x stage-one setting (reads clips, reports completeness); ``EntryWriter`` fills an entry
clip by clip, safely alongside other writers. See ``cache/layout.py`` for the on-disk format.
"""
from cache.entry import CacheEntry, ClipData, EntryIncompleteError, EntryNotFoundError  # noqa: F401
from cache.keys import entry_key, file_identity, stable_hash  # noqa: F401
from cache.layout import FORMAT_VERSION  # noqa: F401
from cache.store import CacheStore, default_root  # noqa: F401
from cache.writer import EntryWriter  # noqa: F401
