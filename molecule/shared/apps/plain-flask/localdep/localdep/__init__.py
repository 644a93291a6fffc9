"""A local package of the plain Flask app."""
