"""Who may do what: principals and their Kafka ACLs and Redis ACL rules, declared in one
file (``access.toml``) and applied by ``streaminfer acls apply``."""
