"""Real servers and helpers shared by the tests."""
