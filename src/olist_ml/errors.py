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
