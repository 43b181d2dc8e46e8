"""slimrt's command line (typer). Thin: parsing and rendering only; logic lives in the library."""
