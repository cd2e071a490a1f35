pytest_plugins = [
    "tests.plugins.network",
    "tests.plugins.azure",
]
