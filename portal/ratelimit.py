"""Per-token rate limit for the agent API: a fixed one-minute window counted in Redis.

One runaway agent must not starve the others, so each bearer token gets its own budget
(`STEWARD_API_RATE_LIMIT` calls a minute, 0 = off). The count is keyed by a prefix of the
token's SHA-256 and checked *before* the token is looked up, so a throttled call costs one
Redis round trip (INCR and EXPIRE in one MULTI/EXEC pipeline) and no database query.

A fixed window lets a token make up to twice the limit across a window boundary; that is
fine for a guard against runaway loops and keeps the check to one atomic round trip.

The limiter fails open: if Redis does not answer, calls pass (logged, at most once a
minute) and Redis is not asked again for a few seconds, so a dead Redis neither takes the
gate down nor slows each call by a timeout. The gate itself still fails closed on its
database. Without REDIS_URL there is no shared counter and the limit is off.
"""

import logging
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
KEY_PREFIX = "steward:ratelimit:"
REDIS_TIMEOUT_SECONDS = 0.25
PAUSE_AFTER_ERROR_SECONDS = 5.0  # how long to skip Redis after it failed
LOG_EVERY_SECONDS = 60.0

_lock = threading.Lock()
_client = None
_client_url = None
_skip_until = 0.0
_logged_at = 0.0


class Throttled(Exception):
    """This token used up its calls for the current window."""

    def __init__(self, *, limit: int, retry_after: int):
        super().__init__(limit, retry_after)
        self.limit = limit
        self.retry_after = retry_after  # whole seconds until the window ends, at least 1

    def detail(self) -> str:
        return (f"Too many requests for this token: the limit is {self.limit} calls a minute. "
                f"Wait {self.retry_after} s (see Retry-After) and slow down; other agents "
                "are not affected.")


def _redis():
    """One client (and connection pool) per process, made again if REDIS_URL changes."""
    global _client, _client_url
    url = settings.REDIS_URL
    client = _client
    if client is None or _client_url != url:
        import redis

        with _lock:  # threads (gthread workers) share one client: a replaced one is closed
            if _client is None or _client_url != url:
                _client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_SECONDS,
                                               socket_connect_timeout=REDIS_TIMEOUT_SECONDS)
                _client_url = url
            client = _client
    return client


def check(key: str, *, now: float | None = None) -> None:
    """Count one call for `key` (a token's hash); raise Throttled past the limit."""
    global _skip_until, _logged_at
    limit = getattr(settings, "STEWARD_API_RATE_LIMIT", 0)
    if limit <= 0 or not settings.REDIS_URL:
        return
    now = time.time() if now is None else now
    if time.monotonic() < _skip_until:
        return
    window = int(now // WINDOW_SECONDS)
    name = f"{KEY_PREFIX}{key[:32]}:{window}"
    try:
        pipe = _redis().pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, WINDOW_SECONDS + 1)
        count, _ = pipe.execute()
    except Exception as exc:  # any Redis failure: let the call through, say so, back off
        _skip_until = time.monotonic() + PAUSE_AFTER_ERROR_SECONDS
        if time.monotonic() - _logged_at >= LOG_EVERY_SECONDS:
            _logged_at = time.monotonic()
            logger.error("API rate limit is off: Redis did not answer (%s). Calls pass "
                         "unthrottled until it does.", exc)
        return
    if count > limit:
        retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
        raise Throttled(limit=limit, retry_after=retry_after)


def reset_for_tests() -> None:
    """Forget the client and any back-off (tests that point REDIS_URL elsewhere)."""
    global _client, _client_url, _skip_until, _logged_at
    _client = _client_url = None
    _skip_until = _logged_at = 0.0
