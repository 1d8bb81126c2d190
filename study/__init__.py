"""The application layer: studies built on the `persona` library (`study.demo` is `make demo`)."""
