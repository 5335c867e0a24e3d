"""Team access (issue 11): who is asking, what they may do, what was done, and the web UI
and API that ask it.

`roles` (the action table and `authorize`), `tokens` (API tokens, hashed in
history.db), `identity` (bearer token or SSO proxy headers → an `Identity`), `audit`
(every mutation and refusal, in history.db), `access` (the gate every request passes),
`metrics` (Prometheus text, and the node_exporter textfile); the server: `app` (the
Starlette app, sessions, CSRF), `api` (the JSON routes), `pages` with `templates/` and
`static/` (the HTML), `charts` (server-side SVG), `words` (schedules in words), `server`
(uvicorn on a thread, a Daemon companion). Nothing here is imported by a daemon that has
no `web:`: the package stays out of its memory (bench/idle.py); `metrics_textfile` alone
imports `metrics` only, `listen` the rest.
"""
