"""Errors a user can cause, as opposed to bugs.

Every exception a user can trigger (a bad file, a wrong option, a missing dataset, a diverging run)
derives from :class:`DigitnetError`. Its message is one sentence that says what is wrong and what to
do; the command line prints it without a traceback. Anything else is a bug and is not swallowed.
"""


class DigitnetError(Exception):
    """A problem the user can fix; the message says how."""


class DataError(DigitnetError):
    """A dataset file is missing, corrupt or cannot be fetched."""


class ModelFileError(DigitnetError):
    """A model file is not a digitnet model, is truncated, or does not match its metadata."""


class ImageError(DigitnetError):
    """An image cannot be read or holds no digit."""


class TrainingDiverged(DigitnetError):
    """The loss became NaN or infinite during training."""


class TrainingFailed(DigitnetError):
    """Training finished but the model is no better than guessing."""


class CheckpointError(DigitnetError):
    """A training checkpoint is missing, damaged, or belongs to another run."""
