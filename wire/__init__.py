"""What the node and the control plane share: the wire contract (``wire.contract``) and
the one parser for model names, refs and digests (``wire.refs``).

In the base install and free of server code, so the node runtime and the CLI import it
without SQLAlchemy, Litestar or the rest of the control plane."""
