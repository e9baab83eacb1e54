"""The project's exceptions and the exit codes they map to.

One place, so the CLI's exit-code table, the README and the tests cannot disagree.
"""

from __future__ import annotations

from enum import IntEnum

from catalog import redact


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the run could not complete (API failure mid-run, or an unexpected error)
    USAGE = 2  # click's own usage errors: an unknown flag, a value of the wrong form
    PARTIAL = 3  # the run completed, but some entities failed and were recorded in sync_errors
    CONFIG = 4  # missing credentials, bad database URL, bad config file
    API_UNREACHABLE = 5  # the API could not be reached, or rejected the credentials
    DATABASE = 6  # the database could not be reached or failed, or its schema is wrong for it
    LOCKED = 7  # another sync holds the lock
    MASS_DELETE = 8  # the delete guard tripped; nothing was deleted
    INTERRUPTED = 9  # SIGINT/SIGTERM: stopped after the current batch


#: What to check when the service refuses the credentials (``sync`` and ``check`` both say it).
AUTH_HINT = (
    "check QIANFAN_ACCESS_KEY / QIANFAN_SECRET_KEY (a key pair of this account, not expired, "
    "allowed to call the console API), QIANFAN_CONSOLE_API_BASE_URL (the console API of that "
    "account) and that the machine's clock is right (signatures expire)"
)


class CatalogError(Exception):
    """Base for errors that end a command with a one-line message and a known exit code."""

    exit_code: ExitCode = ExitCode.FAILED


class ConfigError(CatalogError):
    exit_code = ExitCode.CONFIG


class DatabaseError(CatalogError):
    exit_code = ExitCode.DATABASE


class LockTimeout(CatalogError):
    exit_code = ExitCode.LOCKED


class MassDeleteRefused(CatalogError):
    """The delete guard tripped: the run deleted nothing and says how to let it through."""

    exit_code = ExitCode.MASS_DELETE


class Interrupted(CatalogError):
    """A signal stopped the run; what was fetched before it is written, nothing is deleted."""

    exit_code = ExitCode.INTERRUPTED


class RunFailed(CatalogError):
    """The run started but could not finish; its row in sync_runs says why."""


class ApiError(CatalogError):
    """Any failed API call, whatever shape the service used to say so.

    ``code`` is the service's error code as text (``"AccessDenied"``, ``"18"``), ``status`` the
    HTTP status (200 for the /wenxinworkshop shape, which reports errors inside a 200), ``call``
    names the action or path so a message says which call failed. Never carries credentials: its
    message is scrubbed (:mod:`catalog.redact`) as it is made.
    """

    exit_code = ExitCode.API_UNREACHABLE

    def __init__(
        self,
        message: str,
        *,
        call: str = "",
        code: str = "",
        status: int | None = None,
        request_id: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        # The service's words: an answer may echo the request's signature or the keys.
        self.message = redact.scrub(message)
        self.call = call
        self.code = redact.scrub(code)
        self.status = status
        self.request_id = redact.scrub(request_id)
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.call}: " if self.call else ""
        code = f" [{self.code}]" if self.code else ""
        status = f" (HTTP {self.status})" if self.status else ""
        rid = f" request id {self.request_id}" if self.request_id else ""
        return f"{where}{self.message}{code}{status}{rid}".strip()

    @property
    def is_auth(self) -> bool:
        """The credentials were refused, or the key lacks a permission: a person must act."""
        return self.status in (401, 403) or self.code in AUTH_CODES

    @property
    def is_permission(self) -> bool:
        """The key is valid but its policy does not cover this call (BCE's ``AccessDenied``).

        No other answer is read as "not allowed": in particular no error code is read as "that
        entity does not exist", because the documents define none for these calls (a sibling
        console page even gives the /wenxinworkshop ``500002`` as "auth failed, no access").
        """
        return self.code in PERMISSION_CODES

    @property
    def refuses_the_request(self) -> bool:
        """The console answered this request's content: what it asked may not be read as it was
        asked. Refused credentials, a transient failure and a stranger's answer say nothing of
        what was asked, so a check of a user's ids must not call those ids unknown."""
        return not (self.is_auth or self.retryable or isinstance(self, NotTheApi))


class ApiDown(ApiError):
    """The API stopped answering mid-run: for ``client.OUTAGE`` seconds no call got an answer
    from it (no connection, timeouts, a gateway's 5xx), and ``client.OUTAGE_CALLS`` calls in a
    row failed, each after its own retries. The run ends then, failed and deleting nothing
    (exit 5), instead of failing each remaining entity after its retries, which would take
    long and log an error line per entity."""


class MalformedResponse(ApiError):
    """The service answered, but not as its documents promise (not JSON, no ``result``...)."""


class NotTheApi(ApiError):
    """An error answer that is no console API's (an HTML page with a 404, a 501): whatever
    answered at the base URL is something else, a web server or a wrong path."""


class PaginationError(ApiError):
    """A listing that would loop or lose items: repeated marker, truncated page without a marker."""


#: BCE's common code for a valid key whose policy does not allow the call (HTTP 403).
PERMISSION_CODES = frozenset({"AccessDenied", "AccessDeniedException"})
AUTH_CODES = PERMISSION_CODES | frozenset(
    {
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "RequestExpired",
        "InvalidAuthorization",
    }
)
