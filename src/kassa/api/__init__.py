"""The HTTP API: Starlette on granian, msgspec at the edge, RFC 9457 problems."""
