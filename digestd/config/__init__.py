"""Configuration: reading subscribers.yaml and the environment, and editing subscribers.yaml in place."""
