"""User-facing errors: one line that names the input and what would be accepted."""


class LatentcompError(ValueError):
    """Raised for bad user input (files, specs, shapes). The CLI prints it as one line, no traceback."""
