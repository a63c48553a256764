"""The one user-facing failure type: the CLI prints its message as `error: ...` and exits."""


class MunitError(Exception):
    """A mistake the user can fix (bad path, wrong checkpoint, bad value).

    The message must name the bad value and say what to do. `exit_code` is 1 for a
    failure and 2 for bad usage; the CLI prints no traceback for these.
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
