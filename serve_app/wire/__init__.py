"""The wire: the native HTTP schema (`schema`, pydantic data only) and the views that map the
domain's records (tasks, models, validations) to it. The routes and the webhook sender both
render through here; the compatibility dialects keep their own schemas beside their routes."""
