"""Sub-commands beyond ``run``, one module per pipeline area.

Each module exposes ``register(app, eval_app)``; keeping them apart lets a
stage's commands live next to its owner without touching ``cli.py``.
"""

from importlib import import_module

MODULES = ("run", "tagging", "batch", "evaluate", "diarize", "eval_prosody", "bench", "overview")


def register_all(app, eval_app) -> None:
    for name in MODULES:
        import_module(f"speechpipe.cli.{name}").register(app, eval_app)
