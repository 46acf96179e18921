"""The package's exceptions and the exit code each kind of failure gives on the
command line.

Every error a user can cause derives from :class:`NeurodeployError`; its message is
one line that names the file, the field and what was expected. The CLI turns any
:class:`NeurodeployError` into that line on stderr and exits with the class's
``exit_code`` (see ``docs/cli.md``):

====  ==============================================================
code  meaning
====  ==============================================================
1     any other failure (a bug: please report it)
2     bad input: a file, field, option or value that is not what is expected
3     no Loihi chip is reachable (``deploy`` without ``--fallback sim``)
4     the network does not fit the hardware target (``map``)
5     the output location cannot be used (exists, not writable, another run)
6     an optional dependency (Lava, lava-loihi, nir) is not installed
====  ==============================================================
"""
from __future__ import annotations


class NeurodeployError(Exception):
    """Base of every error a user can cause; ``str(e)`` is one line."""

    exit_code = 1


class InputError(NeurodeployError, ValueError):
    """A file, field, option or value is not what is expected (exit code 2)."""

    exit_code = 2


class ChipUnreachableError(NeurodeployError, RuntimeError):
    """No Loihi system can be reached from this machine (exit code 3)."""

    exit_code = 3


class DoesNotFitError(NeurodeployError, ValueError):
    """The network exceeds a limit of the hardware target (exit code 4)."""

    exit_code = 4


class OutputError(NeurodeployError, OSError):
    """The output location cannot be used (exit code 5)."""

    exit_code = 5


class MissingDependencyError(NeurodeployError, RuntimeError):
    """An optional dependency needed for this step is not installed (exit code 6)."""

    exit_code = 6
