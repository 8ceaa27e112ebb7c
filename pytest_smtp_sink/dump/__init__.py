"""The smtp-sink dump format: Transaction, writing -d/-D files, parse_dump."""
