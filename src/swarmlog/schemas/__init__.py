"""The swarm's language, pure: envelope, event union, credentials, codec and signing."""
