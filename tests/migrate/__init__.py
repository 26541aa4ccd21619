"""`gateway migrate` commands against the Entra and Okta emulators."""
