"""The pytest plugin: options, loading benches, the agent, items, task execution and the controller's reporting."""
