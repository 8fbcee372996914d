"""What the commands do. `zlt/cli/<group>.py` declares a command (its options and help, all `zlt --help` needs);
its body lives here, in `zlt/cli/impl/<group>.py`, whose imports sit at the top. A declaration imports its body
on first use, the one lazy import per group: the libraries behind it pull pydantic, jinja2 or numpy, and
`zlt --help` must start without them."""
