"""The one error type users see: a problem and, where known, its fix, printed on one line."""


class HpcctlError(Exception):
    """A failure the user can act on. ``str()`` gives the one line the CLI prints."""

    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem} ({self.fix})" if self.fix else self.problem


class ConfigError(HpcctlError):
    """A config or spec file is invalid; ``problems`` holds every finding, each with file:line."""

    exit_code = 2

    def __init__(self, problems: list[str], fix: str | None = None):
        self.problems = problems
        head = problems[0] if len(problems) == 1 else f"{len(problems)} problems:\n  " + "\n  ".join(problems)
        super().__init__(head, fix)
