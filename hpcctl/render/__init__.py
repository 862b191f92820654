"""Turn typed job specs into batch scripts with Jinja2 templates that a site can override."""
