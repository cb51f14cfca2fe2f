"""Services bundled with bigbrotr, runnable by name (``bigbrotr run demo``)."""
