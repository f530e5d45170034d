"""The control node: policies run on their schedules in each client's zone."""
