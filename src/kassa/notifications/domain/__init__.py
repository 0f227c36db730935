"""Pure core of the notifications context: signing, retry decisions, endpoint rules, notifications.

Imports only the standard library, `kassa.shared` and this context's `errors` module (itself
importing only `kassa.shared`), so the rules can be tested and reused without any I/O.
"""
