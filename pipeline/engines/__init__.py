"""Engines that spread stage one's per-clip work (:func:`stages.extract.run.extract_clips`):
``local`` (this process or ``--workers`` processes on this machine) and ``dask`` (a cluster)."""
