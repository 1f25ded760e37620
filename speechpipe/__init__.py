"""speechpipe: offline analysis of recorded NKS contact-centre calls."""

__version__ = "0.1.0"
