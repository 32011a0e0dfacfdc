"""`sme demo` (`make demo`): a sample sequence created through the HTTP API, a simulated
population that publishes events through Kafka in real time, and a demo sender that answers
the engine's commands as the simulator's world would, so a newcomer sees the engine work
within minutes. Pure parts: `reactions` (what the world does with a message), `progress`
(the live line) and `plan` (the sequence's create body); the rest is the shell in `run`."""
