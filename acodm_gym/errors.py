"""The project's error types, in one dependency-free module at the bottom of the layers.

Every layer raises them and the CLI maps them to exit codes without importing the layers:
an ``InputError`` is bad input (exit 2: fix it and rerun), a ``RunFailure`` stopped a run that
was set up correctly (exit 1: its last checkpoint is usable). Both keep their builtin bases
(``ValueError``, ``RuntimeError``), so callers catching those still catch these.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input (config, corpus, run directory, checkpoint), with a message that says how to fix it."""


class RunFailure(RuntimeError):
    """A run that was set up correctly and stopped; the message says what survived and how to go on."""


class ConfigError(InputError):
    """A configuration problem, with a message that says how to fix it."""


class CorpusError(InputError):
    """A corpus that cannot be built or read, with a message that says what to fix."""


class RecipeError(InputError):
    """A recipe that cannot be applied to its base corpus, with what to fix."""


class RunDirError(InputError):
    """The run directory cannot be used as asked: another run holds it, or it holds work to keep."""


class ResumeError(InputError):
    """A run cannot be resumed from this checkpoint (none complete, changed config, other corpus…)."""


class NonFiniteLossError(RunFailure):
    """Raised after too many consecutive steps with a non-finite loss or gradient."""


class CheckpointError(RunFailure):
    """Writing a checkpoint failed (e.g. a full disk); the previous checkpoint is intact."""


class RankLostError(RunFailure):
    """Another rank hung or died (silent for ``train.dist_timeout``): every surviving rank stops; resume."""


class OutputError(RunFailure):
    """Writing a final output failed; the message says what survived and how to write them again."""


class AgentError(InputError):
    """An agent that cannot be built or loaded as asked: an option value, its weights, or a saved file."""


class MissingFileError(InputError, FileNotFoundError):
    """A file named in the config or on the command line that does not exist."""
