"""Alerts: rules in PostgreSQL, judged on final bars, delivered by WebSocket, webhook or e-mail."""
