"""Tests that drive a real browser (Debian's headless Chromium) against a real server."""
