"""The static rules, one module each. The registry finds every `Rule` subclass defined here."""
