"""The compliance domain: sanctions matching, KYC states, limits and monitoring rules. Pure."""
