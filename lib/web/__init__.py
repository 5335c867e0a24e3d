"""Team access (issue 11): who is asking, what they may do, what was done.

`roles` (the action table and `authorize`), `tokens` (API tokens, hashed in
history.db), `identity` (bearer token or SSO proxy headers → an `Identity`), `audit`
(every mutation and refusal, in history.db) and `metrics` (Prometheus text, and the
node_exporter textfile). Nothing here is imported by a daemon that has no `web:`:
the package stays out of its memory (bench/idle.py).
"""
