"""Optimizers, schedules and callbacks shared by every task."""
