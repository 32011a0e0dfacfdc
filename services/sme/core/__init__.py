"""The functional core: pure decision logic over plain data. No I/O, no clock reads, no
global randomness: every function takes `now` (and an RNG where it needs one) as input, so the
engine, the tests and the simulator run the same code."""
