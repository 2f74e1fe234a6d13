"""Project tooling that runs next to the app: the day-one command and the deployers."""
