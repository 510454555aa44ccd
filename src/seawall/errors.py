"""The error tree of seawall.

Every error seawall raises on purpose derives from :class:`SeawallError`. The edges
(CLI exit codes, HTTP status) map these classes, never messages::

    SeawallError                      exit 1
    ├── InvalidInput                  exit 2   bad file, argument or request; nothing was done
    │   └── PreflightFailed           exit 3   an operation's checks failed; lists every problem
    ├── NotFound                      exit 4   a named site/workload/checkpoint/run does not exist
    ├── Conflict                      exit 5   the object exists or is in the wrong state
    ├── TransientError                exit 6   retried with backoff (network, 5xx, lock busy)
    │   └── SiteUnavailable                    a site cannot be reached
    ├── PermanentError                exit 7   retrying will not help
    │   ├── Forbidden                          valid caller, not allowed (HTTP 403)
    │   ├── Cancelled                          a run was cancelled by its user
    │   ├── StepTimeout                        a step passed its deadline
    │   └── VerificationFailed                 recovered data or health checks did not match
    └── IntegrityError                exit 8   data failed authentication; never retried
        └── RepositoryError                    the repository cannot be opened or used
            ├── WrongPassphrase       exit 9
            ├── KeyMissing            exit 10
            ├── UnsupportedVersion    exit 11
            └── CorruptObject         exit 12  names the object and what refers to it

Docstrings are message templates: they say what went wrong and what to do about it.
"""

from __future__ import annotations


class SeawallError(Exception):
    """Something went wrong in seawall."""

    exit_code = 1
    http_status = 500


class InvalidInput(SeawallError):
    """The input is malformed; fix the named field and try again. Nothing was changed."""

    exit_code = 2
    http_status = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class PreflightFailed(InvalidInput):
    """The operation's preflight found problems; all are listed. Nothing was created."""

    exit_code = 3
    http_status = 409

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        text = "; ".join(problems)
        super().__init__(f"preflight failed ({len(problems)} problem(s)): {text}")


class NotFound(SeawallError):
    """The named object does not exist; list them to see what does."""

    exit_code = 4
    http_status = 404


class Conflict(SeawallError):
    """The object already exists or is in a state that does not allow this."""

    exit_code = 5
    http_status = 409


class InvalidTransition(Conflict):
    """A state machine was asked for a transition its table does not allow."""


class TransientError(SeawallError):
    """A temporary failure; the operation is retried with backoff."""

    exit_code = 6
    http_status = 503


class SiteUnavailable(TransientError):
    """The site cannot be reached; check that it is up and its credentials are valid."""


class PermanentError(SeawallError):
    """A failure that retrying will not cure."""

    exit_code = 7


class Forbidden(PermanentError):
    """The caller is known but not allowed to do this: it needs another role, or the site
    holds no credentials to act for its project."""

    http_status = 403


class Cancelled(PermanentError):
    """The run was cancelled by its user."""


class StepTimeout(PermanentError):
    """A step did not finish before its deadline."""


class VerificationFailed(PermanentError):
    """Recovered data or a health check did not match what the checkpoint promised."""


class IntegrityError(SeawallError):
    """Stored data failed authentication or does not match its id; it is never retried."""

    exit_code = 8


class RepositoryError(IntegrityError):
    """The repository cannot be opened or used as asked."""


class WrongPassphrase(RepositoryError):
    """No key slot opens with this passphrase; check SEAWALL_PASSPHRASE or --passphrase-file."""

    exit_code = 9


class KeyMissing(RepositoryError):
    """The repository has no key file; it was not initialised or its keys were removed."""

    exit_code = 10


class UnsupportedVersion(RepositoryError):
    """The repository uses a format version this seawall cannot read; upgrade seawall."""

    exit_code = 11


class CorruptObject(RepositoryError):
    """An object failed authentication or is truncated; run `repo check --read-data`."""

    exit_code = 12
