"""Stand-in partner APIs for the demo and the tests, served over real HTTP on loopback."""
