"""Model versions at run time: the control topic, following it, shadow scoring, status."""
