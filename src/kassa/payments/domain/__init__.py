"""The payments domain: pure rules, no I/O (only the standard library and kassa.shared)."""
