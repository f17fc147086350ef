"""Stage two's training side: PeVL in mmengine's Runner, evaluation, sweeps and their reports.

``build_run_config`` (config.py) -> ``train_variant`` / ``evaluate_checkpoint`` (runner.py) ->
``run_sweep`` (sweep.py) writes ``W/NAME/VARIANT/`` per variant and ``W/NAME/results.{md,json}``.
"""
