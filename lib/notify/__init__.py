"""Alerts: the channel layer (issue 9).

`message.build_alert` turns a run's report.json data into an `Alert`; each module in
`channels/` renders an Alert in its service's native format (`render`, pure) and sends
it (`send`, through `delivery`); `hygiene` decides whether an alert goes out now, later
or not at all. Nothing here reads jobs.yaml or history: the caller passes plain data.
"""
