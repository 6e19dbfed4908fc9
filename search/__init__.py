"""NEMO neuroevolution and baseline searches, installed as hwq.search."""
