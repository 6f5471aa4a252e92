"""Simulated models whose behaviour is set and known, for measuring what strategies and verifiers
do to accuracy: `samples` (questions of drawn difficulty, samples with confidence signals, in
memory), `steps` (GSM8K solutions written as steps with arithmetic and logic slips, served over
HTTP) and `locator` (a reward model that finds the first mistake X% of the time)."""
