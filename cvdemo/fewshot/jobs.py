"""The few-shot lessons' background jobs use the project's one job type: :class:`cvdemo.jobs.BackgroundJob`."""

from cvdemo.jobs import BackgroundJob

__all__ = ["BackgroundJob"]
