"""The ground floor: the vocabulary every other part of zlt speaks (errors, events, failure causes, job kinds,
id formats, file-system helpers, where state lives). Nothing here imports any other part of zlt, so the trainer
child process can load it without the spec, the renderers or the runner."""
