"""User-facing errors: one clear line, shown without a traceback by the command line."""


class ChemlatentError(Exception):
    """An error caused by input the user can fix (bad file, bad option, missing survey)."""


class SurveyError(ChemlatentError):
    """A survey directory is missing, incomplete or inconsistent."""


class FormatError(ChemlatentError):
    """A file could not be read as any supported spectrum format."""


class ModelError(ChemlatentError):
    """A model directory is missing, unsafe, or does not match the survey."""
