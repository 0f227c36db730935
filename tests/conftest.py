"""Root test configuration: shared fixtures come from tests/support as pytest plugins."""

pytest_plugins = ["support.db", "support.events", "support.server", "support.receiver", "support.tools_redis"]
