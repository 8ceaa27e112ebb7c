"""The sans-IO core: options, configuration, the SMTP/LMTP protocol. Standard library only."""
