pytest_plugins = [
    "tests.plugins.network",
    "tests.plugins.azure",
    "tests.plugins.flink",
]
