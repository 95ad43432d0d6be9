"""The locality dial (bias/mask builders, layer schedules, hooks) and localist training."""
