"""Model importers. The IR does not depend on any of them."""
