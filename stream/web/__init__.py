"""Static files of the dashboard page (package data): HTML, CSS and a hand-written canvas chart."""
