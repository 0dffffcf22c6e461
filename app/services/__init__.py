"""The service layer: commands and queries that know nothing of HTTP.

The JSON API, the HTML pages, RQ tasks and CLI commands all call these.
"""
