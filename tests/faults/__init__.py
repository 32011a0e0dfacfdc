"""The fault suite of issue 9, "the engine never loses a command".

Engine, gateway and broker run as real processes on a broker of the suite's own (so restarting
it never disturbs anyone else's tests); faults are injected with SIGKILL and broker restarts; a
verifier reads every command topic and the activities, and compares them with what each user
should have received. `python -m tests.faults run` (or `make faults`) runs every scenario,
`python -m tests.faults soak` (or `make soak`) the long run; tests/e2e/test_faults.py is the
reduced form CI runs.
"""
