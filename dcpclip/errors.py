"""The root of the failures a user causes and can fix (bad input, a missing or corrupt file, no network, a
bad config), as opposed to bugs. Every entry point prints an `ExpectedError` as one line naming the file,
key or URL (plus at most one hint line) and exits 2; anything else is a bug and gets its traceback
(`experiments.cli.failed`). Each part of the library raises its own subclass (`DataError`, `ConfigError`,
`RecordError`, ...); the standard base each also has (ValueError, RuntimeError) is kept for callers that
catch those. Derived caches are never an error: a corrupt entry is a `CorruptCacheWarning` and is redone."""


class ExpectedError(Exception):
    """A failure the message explains: it names what is wrong and where; `hint` says what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class CorruptCacheWarning(UserWarning):
    """A derived cache entry (a text bank, an extracted archive) was found corrupt: named, removed, redone."""
