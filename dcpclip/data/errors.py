"""The one error type of the data pipeline."""


class DataError(ValueError):
    """Missing, corrupt or unexpected data. The message names the file, source, key or value."""
