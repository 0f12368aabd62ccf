"""One exception hierarchy for user errors.

Anything derived from :class:`VpdsrError` is the user's to fix (a bad file, a wrong flag, a
missing optional package or weight file); the CLI prints its message as one line and exits
with :attr:`VpdsrError.exit_code`. Every other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class VpdsrError(Exception):
    """Base of every user-facing error. The message must fit on one line."""

    exit_code = 2


class InputError(VpdsrError):
    """A file or argument the user gave is missing, corrupt or of the wrong kind."""


class ConfigError(VpdsrError):
    """A config file or config field is invalid."""


class CheckpointError(VpdsrError):
    """A checkpoint directory does not match what its config says (missing/extra/mis-shaped tensors)."""


class ArtifactError(VpdsrError):
    """An exported artifact is incomplete, modified after export, or built for another tool/device."""


class CapabilityError(VpdsrError):
    """This machine lacks what the request needs (a GPU, a CPU feature such as bf16, a package).

    The thing asked for is fine; it cannot run *here*: reports list it as "skipped", not "failed".
    """


class MissingDependencyError(CapabilityError):
    """An optional package is needed for what was asked; the message says what to install."""


class MissingWeightsError(VpdsrError):
    """Pretrained weights (CLIP, LPIPS, ...) are not on this machine; the message says where we looked."""


class GateFailed(VpdsrError):
    """A benchmark gate did not hold (exit code 1, unlike the other user errors)."""

    exit_code = 1
