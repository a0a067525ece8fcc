"""The fault matrix (`make faults`): the real service under real faults, one row each.

- ``rig``: the service as a subprocess, its stores, the steady load, a health prober,
  memory and descriptor sampling, the fault window, and the judging of each row;
- ``scenarios``: the rigs and their faults (OPA killed / hung / scripted-bad, missing
  policy, Redis stopped / killed, PostgreSQL stopped / hung, receipt disk full, service
  SIGKILL, a 5 000 in-flight wave, 20 000 idle connections);
- ``bad_opa``: the scripted OPA (a proxy to a real one that misbehaves on cue);
- ``load``: the steady Decide load; ``probe``: helper processes (health, idle
  connections, the wave client).

docs/faults.md says what each column means and the bounds a run must meet.
"""
