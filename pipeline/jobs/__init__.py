"""Long work above ``ml/`` and ``trading/``: training, backtests, optimisation, each on its own thread.

Pages, the CLI and the runtime start jobs here; a job reads bars, calls the domain packages and
reports its progress through ``snapshot()``. Nothing in ``ml/`` or ``trading/`` imports this.
"""
