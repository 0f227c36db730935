"""The identity context: tenants, API keys and (later) customers, KYC and limits."""
