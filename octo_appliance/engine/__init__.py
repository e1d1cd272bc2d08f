"""The engine: server tasks (queue, executor, log) and, later, deployments and releases.

It knows nothing of HTTP: the API reaches it through :class:`tasks.TaskEngine`.
"""
