"""Implementations of the application's ports; they know no HTTP and no DI."""
