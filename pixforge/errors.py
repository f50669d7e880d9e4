"""User-facing errors.

A :class:`PixforgeError` carries a one-line message that names the file or option at fault.
The CLI prints it and exits with code 2; the traceback is shown only with ``--debug``.
"""


class PixforgeError(Exception):
    """Bad input from the user: a file, folder, option or checkpoint that cannot be used."""
