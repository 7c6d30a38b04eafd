"""The daemon: webhooks in, rules run, effects out; with its logs and metrics."""
