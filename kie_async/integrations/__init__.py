"""Integrations: kie-async jobs for the task engines people already run (Celery, Taskiq).

Each engine module is an optional extra (``kie-async[celery]``, ``kie-async[taskiq]``) and imports its engine at
the top; :mod:`kie_async.integrations.jobs` is the engine-neutral part (one request through ``run_pipeline``,
bought once however often the engine delivers the job) and needs no engine.
"""
