"""One Screen per module: studies (overview), study, trial, events, help, confirm."""
