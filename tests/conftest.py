pytest_plugins = [
    "tests.plugins.network",
]
