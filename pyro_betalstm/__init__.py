"""pyro_betalstm: the Bivariate Beta-LSTM (Song, Jang, Shin & Moon, AAAI 2020) as a Pyro program.

The input and forget gates of an LSTM become random variables drawn from bivariate Beta
distributions built from Gamma variables; priors over them are ordinary Python objects, amortised
guides produce their posteriors and SVI trains the network.
"""

__version__ = "0.1.0"
