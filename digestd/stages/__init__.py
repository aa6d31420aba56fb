"""The run's stages. Each takes what the one before returned (not the state files) and
returns what the next needs; `digestd/pipeline.py` wires them in order."""
