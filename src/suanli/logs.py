"""Logging for the long-running commands (`suanli serve`, `suanli agent`): one line per event, as
text for people or as JSON for machines (`--log-format json`), with the id of the request being
served when there is one.

The request id lives in a context variable (`REQUEST_ID`): the API's middleware sets it for each
request, and every record logged while that request is served (in the event loop or in the
thread pool, which copies the context) carries it, so a decision and an error can be traced to
the call that caused them.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("suanli_request_id", default=None)
FORMATS = ("text", "json")
# attributes every LogRecord has; anything else on a record came from `extra=` and is logged too
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, request_id and any
    `extra=` fields; an exception's traceback as `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        for k, v in vars(record).items():
            if k not in _STANDARD and v is not None:
                out[k] = v if isinstance(v, str | int | float | bool) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid else line


def configure(fmt: str = "text", level: str | int = "INFO") -> None:
    """Log to stderr in `fmt` ("text" or "json") from `level` up, replacing any earlier set-up
    (the root logger's handlers), and route uvicorn's own loggers through the same handler."""
    if fmt not in FORMATS:
        from suanli.errors import UserError
        raise UserError(f"--log-format: {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_WithRequestId())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    # uvicorn's access log repeats what the API's middleware logs (with the request id): off
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
