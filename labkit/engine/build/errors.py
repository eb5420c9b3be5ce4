"""The builder's errors: a Dockerfile mistake names its line, as Docker's parser does."""

from __future__ import annotations

from labkit import errors

__all__ = ["BuildError", "DockerfileError"]


class DockerfileError(errors.InvalidArgumentError):
    """A Dockerfile that cannot be parsed or dispatched.  The message is Docker's:
    ``Dockerfile parse error line N: <problem>`` (moby builder/dockerfile/parser)."""

    def __init__(self, line: int, problem: str, hint: str | None = None) -> None:
        super().__init__("Dockerfile", f"Dockerfile parse error line {line}: {problem}", hint)
        self.line = line

    def __reduce__(self):  # type: ignore[no-untyped-def]
        prefix = f"Dockerfile parse error line {self.line}: "
        return (type(self), (self.line, self.problem.removeprefix(prefix), self.hint))


class BuildError(errors.LabkitError):
    """A step that ran and failed (a RUN's non-zero exit): Docker's message as is."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message, self.code = message, code

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.message, self.code))
