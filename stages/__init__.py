"""DVC stage entry points: thin wrappers that take paths and read only their own params."""
