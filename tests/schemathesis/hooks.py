"""Schemathesis hooks for routegate: the API's own rule for server errors.

Loaded through SCHEMATHESIS_HOOKS by tests/schemathesis.sh.
"""

import schemathesis


@schemathesis.check
def no_undocumented_server_error(ctx, response, case):
    """No 5xx at all, except a 503 that the operation documents.

    routegate answers 503 (with Retry-After) only when nothing was written and a retry will do:
    the outbox is full, the request timed out, the record was contended, the gateway is shutting
    down, or (kafka-health, ready) the reported component is unhealthy.
    """
    status = response.status_code
    if status < 500:
        return None
    responses = case.operation.definition.raw.get("responses") or {}
    if status == 503 and "503" in responses:
        return None
    raise AssertionError(
        f"{case.operation.label} answered {status}, which it does not document: "
        f"{response.text[:300]}"
    )
