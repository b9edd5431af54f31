"""Correctness tests of the package core (gates, LSTM, model/guide, ELBO, fit, prediction)."""
