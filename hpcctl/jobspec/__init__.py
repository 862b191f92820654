"""Job specs: the YAML users write, its JSON Schema, typed objects, and checks against the site config."""
