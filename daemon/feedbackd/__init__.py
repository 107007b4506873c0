"""feedbackd: an email-driven helpdesk daemon for public feedback."""

__version__ = "0.1.0"
