"""Route modules; importing one registers its endpoints."""
