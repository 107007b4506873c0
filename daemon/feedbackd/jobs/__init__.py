"""Scheduled jobs: reminders, escalations, progress notices, digests, reports, auto-close and purge.

``runner.run_due`` runs what is due at one instant, claiming each occurrence in ``job_run`` so that
``feedbackd jobs run`` (cron) and any number of daemons run it once; ``base`` holds what jobs share.
"""
