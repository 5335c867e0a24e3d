"""One module per channel: a pure `render(alert) -> payload` and a `send`."""
