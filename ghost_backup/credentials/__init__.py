"""Just-in-time credentials: the key model (``model``), HTTP with retries (``http``,
``json_api``) and one adapter per source (``sources``)."""
