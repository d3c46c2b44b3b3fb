"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class OlistMLError(Exception):
    """A problem the user can fix (bad input, missing step, unknown name).

    The message must be one line that names the file/column/row or the step to run.
    """

    exit_code = 2


class InputError(OlistMLError):
    """Bad input data: missing/corrupt file, missing column, untypable rows in --strict mode."""


class MissingStepError(OlistMLError):
    """A prerequisite step has not run (no warehouse, no features, no champion...)."""


class UnknownNameError(OlistMLError):
    """An unknown problem, feature table, cadence, engine..."""


class SettingsMismatchError(OlistMLError):
    """A model version was trained with other settings (horizon, feature windows...) than the current
    ones, so it would score inputs it never saw: the message names both values."""


class NotReadyError(OlistMLError):
    """Nothing to learn or score yet, for a stated reason the data will resolve by itself
    (e.g. no marketing deal has a full label horizon yet). `olist-ml run` reports the problem as
    skipped with this reason and still exits 0; a single command (`train`, `predict`) exits 2."""


class EnvironmentFault(OlistMLError):
    """The machine, not the data: the home is a file or read-only, the disk is full, the
    warehouse path is a folder or not a DuckDB file, another writer holds the home's lock."""
