"""The command-line interface (typer + rich); see `app.py`."""
