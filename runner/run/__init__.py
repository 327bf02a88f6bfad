"""Running a plan: the preflight and launch files in the parent, and the training entry point every process runs.

`runner.run.train` is the entry point `accelerate launch` starts; nothing imports it.
"""
