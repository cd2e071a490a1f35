from flink_task.cli import console_main

console_main()
