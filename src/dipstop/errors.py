"""The one exception type dipstop raises for problems a user can fix."""


class DipstopError(Exception):
    """A problem with the user's input or settings, with its fix in the message.

    The CLI prints the message on one line and exits non-zero; the Python API lets it
    propagate. The message names the problem and what to do about it.

    Examples
    --------
    >>> from dipstop.protocols import get_protocol
    >>> try:
    ...     get_protocol("gpu")
    ... except DipstopError as exc:
    ...     print(exc)
    unknown protocol 'gpu'; choose one of paper, cpu
    """
