"""The one error type of the data pipeline."""

from dcpclip.errors import ExpectedError


class DataError(ExpectedError, ValueError):
    """Missing, corrupt or unexpected data. The message names the file, source, key or value."""
