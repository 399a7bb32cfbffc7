# The project's own pytest plugin, loaded from the root conftest.
pytest_plugins = ["ledger_testing.plugin"]
