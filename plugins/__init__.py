"""Source plugins: one module per directory type behind the interface in `plugins.base`."""
