"""Classroom exercises: the runner behind ``chatlab ex``, the checks' toolkit, and the servers' harness.

* :mod:`chatlab.exercises.harness`: the part of every exercise server that is not
  the lesson (listen, accept, one thread per client, stop and join);
* :mod:`chatlab.exercises.kit`: what checks are made of (requirements with plain-words
  messages, scripted people with transcripts, race runs under swarms);
* :mod:`chatlab.exercises.manifest`: ``exercises/exercises.toml`` read and validated;
* :mod:`chatlab.exercises.runner`: ``chatlab ex list|check|hint|watch|reset|next``.
"""
