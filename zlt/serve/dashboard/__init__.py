"""The web dashboard `zlt serve` serves under /ui: Jobs, Job, Artifacts and artifact pages, server-rendered with
Jinja2 (templates/ and static/ beside this file; no build step, nothing from elsewhere). docs/dashboard.md.

`zlt.serve.dashboard.pages.install(app, cfg)` mounts it; `views` holds what each page shows."""
