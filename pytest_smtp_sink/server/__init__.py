"""The trio server: listeners, sessions and the drivers that serve them."""
