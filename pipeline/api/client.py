"""The desk's own call to its API, server-side: the Settings page checks the API answers its token.

``check_api`` sends one ``GET /api/journal/summary`` with the bearer token over loopback (the
address the API binds, or 127.0.0.1 when it binds every interface) and says what came back. The
token never leaves this process except in that header. Cost: one local HTTP request, at most
``timeout`` seconds.
"""

from __future__ import annotations

import http.client

from pipeline.api.guard import is_loopback


def check_api(host: str, port: int, token: str, timeout: float = 2.0) -> tuple[bool, str]:
    """Return (answered with data, what happened) for one authenticated request to the API."""
    target = host if is_loopback(host) or host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    connection = http.client.HTTPConnection(target, port, timeout=timeout)
    try:
        connection.request("GET", "/api/journal/summary", headers={"Authorization": f"Bearer {token}"})
        status = connection.getresponse().status
    except OSError as exc:
        return False, f"no answer ({type(exc).__name__})"
    finally:
        connection.close()
    if status == 200:
        return True, "answers the desk's token"
    return False, f"answered {status} to the desk's token"
